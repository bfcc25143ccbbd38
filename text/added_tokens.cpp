#include "text/added_tokens.hpp"

#include "text/utf8.hpp"

namespace troupe {
namespace {

bool is_ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// A word character for single_word: letters, digits, '_' and any non-ASCII character.
bool is_word_byte(unsigned char c) {
  return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher() : nodes_(1) { root_children_.fill(-1); }

void AddedTokenMatcher::add(const AddedToken& token) {
  if (token.content.empty()) return;
  const auto index = static_cast<int32_t>(tokens_.size());
  tokens_.push_back(token);
  int32_t node = 0;
  for (size_t i = 0; i < token.content.size(); ++i) {
    const auto c = static_cast<unsigned char>(token.content[i]);
    int32_t child = -1;
    if (node == 0) {
      child = root_children_[c];
    } else {
      for (const auto& [byte, next] : nodes_[static_cast<size_t>(node)].children)
        if (byte == c) child = next;
    }
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      if (node == 0) {
        root_children_[c] = child;
      } else {
        nodes_[static_cast<size_t>(node)].children.emplace_back(c, child);
      }
    }
    node = child;
  }
  // The same content twice: the first one wins.
  if (nodes_[static_cast<size_t>(node)].token < 0) nodes_[static_cast<size_t>(node)].token = index;
}

std::pair<int32_t, size_t> AddedTokenMatcher::longest_at(std::string_view text, size_t pos) const {
  int32_t node = root_children_[static_cast<unsigned char>(text[pos])];
  std::pair<int32_t, size_t> best{-1, pos};
  size_t i = pos + 1;
  while (node >= 0) {
    const Node& n = nodes_[static_cast<size_t>(node)];
    if (n.token >= 0) best = {n.token, i};
    if (i >= text.size()) break;
    const auto c = static_cast<unsigned char>(text[i]);
    int32_t next = -1;
    for (const auto& [byte, child] : n.children)
      if (byte == c) next = child;
    node = next;
    ++i;
  }
  return best;
}

bool AddedTokenMatcher::word_boundaries_ok(std::string_view text, size_t begin, size_t end) const {
  const bool left_ok = begin == 0 || !is_word_byte(static_cast<unsigned char>(text[begin - 1]));
  const bool right_ok = end >= text.size() || !is_word_byte(static_cast<unsigned char>(text[end]));
  return left_ok && right_ok;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSegment>& out) const {
  size_t plain_begin = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (root_children_[static_cast<unsigned char>(text[pos])] < 0) {
      ++pos;
      continue;
    }
    const auto [index, end] = longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[static_cast<size_t>(index)];
    if (token.single_word && !word_boundaries_ok(text, pos, end)) {
      ++pos;
      continue;
    }
    size_t match_begin = pos, match_end = end;
    if (token.lstrip)
      while (match_begin > plain_begin && is_ascii_space(static_cast<unsigned char>(text[match_begin - 1]))) --match_begin;
    if (token.rstrip)
      while (match_end < text.size() && is_ascii_space(static_cast<unsigned char>(text[match_end]))) ++match_end;
    if (match_begin > plain_begin) out.push_back({plain_begin, match_begin, -1});
    out.push_back({match_begin, match_end, token.id});
    plain_begin = pos = match_end;
  }
  if (plain_begin < text.size()) out.push_back({plain_begin, text.size(), -1});
}

}  // namespace troupe

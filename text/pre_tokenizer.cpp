#include "text/pre_tokenizer.hpp"

#include <algorithm>

namespace troupe {
namespace {

using Range = std::pair<uint32_t, uint32_t>;

// Applies a split behaviour to the (range, is_match) list of one piece, appending to out.
void apply_behavior(SplitBehavior behavior, const std::vector<std::pair<Range, bool>>& parts, std::vector<Range>& out) {
  const size_t base = out.size();
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::removed:
      for (const auto& [range, is_match] : parts)
        if (!is_match) out.push_back(range);
      break;
    case SplitBehavior::isolated:
      for (const auto& part : parts) out.push_back(part.first);
      break;
    case SplitBehavior::merged_with_previous:
      for (const auto& [range, is_match] : parts) {
        if (is_match && !previous_match && out.size() > base) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    case SplitBehavior::merged_with_next: {
      for (size_t i = parts.size(); i-- > 0;) {
        const auto& [range, is_match] = parts[i];
        if (is_match && !previous_match && out.size() > base) {
          out.back().first = range.first;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      std::reverse(out.begin() + static_cast<std::ptrdiff_t>(base), out.end());
      break;
    }
    case SplitBehavior::contiguous:
      for (size_t i = 0; i < parts.size(); ++i) {
        const auto& [range, is_match] = parts[i];
        if (i > 0 && is_match == previous_match) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      break;
  }
}

}  // namespace

bool PreTokenizer::has_byte_level() const {
  for (const auto& step : steps_)
    if (step.kind == PreTokenizerStep::Kind::byte_level) return true;
  return false;
}

void PreTokenizer::run(PreTokenized& data, bool is_first) const {
  data.pieces.clear();
  if (data.text.empty()) return;
  data.pieces.emplace_back(0, static_cast<uint32_t>(data.text.size()));
  for (const auto& step : steps_) {
    switch (step.kind) {
      case PreTokenizerStep::Kind::split:
        split(step, data);
        break;
      case PreTokenizerStep::Kind::byte_level:
        if (step.add_prefix_space) add_prefix_space(data);
        if (step.use_regex) split(step, data);
        break;
      case PreTokenizerStep::Kind::metaspace:
        metaspace(step, data, is_first);
        break;
    }
  }
}

void PreTokenizer::split(const PreTokenizerStep& step, PreTokenized& data) const {
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  thread_local std::vector<std::pair<Range, bool>> parts;
  std::vector<Range> out;
  out.reserve(data.pieces.size() * 2 + 4);
  const std::string_view text = data.text;
  for (const auto& [begin, end] : data.pieces) {
    matches.clear();
    parts.clear();
    step.regex.find_all(text.substr(begin, end - begin), matches);
    uint32_t cursor = begin;
    for (const auto& [match_begin, match_end] : matches) {
      const auto b = static_cast<uint32_t>(begin + match_begin), e = static_cast<uint32_t>(begin + match_end);
      if (b > cursor) parts.push_back({{cursor, b}, step.invert});
      parts.push_back({{b, e}, !step.invert});
      cursor = e;
    }
    if (cursor < end) parts.push_back({{cursor, end}, step.invert});
    apply_behavior(step.behavior, parts, out);
  }
  data.pieces = std::move(out);
}

void PreTokenizer::add_prefix_space(PreTokenized& data) const {
  std::string text;
  std::vector<Range> pieces;
  for (const auto& [begin, end] : data.pieces) {
    const auto start = static_cast<uint32_t>(text.size());
    if (data.text[begin] != ' ') text.push_back(' ');
    text.append(data.text, begin, end - begin);
    pieces.emplace_back(start, static_cast<uint32_t>(text.size()));
  }
  data.text = std::move(text);
  data.pieces = std::move(pieces);
}

void PreTokenizer::metaspace(const PreTokenizerStep& step, PreTokenized& data, bool is_first) const {
  const std::string& rep = step.replacement;
  std::string text;
  std::vector<Range> pieces;
  for (const auto& [begin, end] : data.pieces) {
    const auto start = static_cast<uint32_t>(text.size());
    const std::string_view piece = std::string_view(data.text).substr(begin, end - begin);
    const bool prepend = step.prepend_scheme == "always" || (step.prepend_scheme == "first" && is_first && begin == 0);
    if (prepend && piece.substr(0, rep.size()) != rep) text.append(rep);
    for (char c : piece) {
      if (c == ' ') {
        text.append(rep);
      } else {
        text.push_back(c);
      }
    }
    const auto stop = static_cast<uint32_t>(text.size());
    if (!step.metaspace_split) {
      pieces.emplace_back(start, stop);
      continue;
    }
    // Split before every replacement character (MergedWithNext).
    uint32_t piece_start = start;
    for (size_t pos = text.find(rep, start + 1); pos != std::string::npos && pos < stop; pos = text.find(rep, pos + 1)) {
      pieces.emplace_back(piece_start, static_cast<uint32_t>(pos));
      piece_start = static_cast<uint32_t>(pos);
    }
    if (piece_start < stop) pieces.emplace_back(piece_start, stop);
  }
  data.text = std::move(text);
  data.pieces = std::move(pieces);
}

}  // namespace troupe

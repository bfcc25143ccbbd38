// IncrementalDetokenizer (declared in tokenizer.hpp): the prefix / read offset technique.
#include "text/tokenizer.hpp"
#include "text/utf8.hpp"

namespace troupe {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens,
                                               bool spaces_between_special_tokens)
    : tokenizer_(&tokenizer),
      skip_special_tokens_(skip_special_tokens),
      spaces_between_special_tokens_(spaces_between_special_tokens) {}

namespace {

// The text ids[prefix, size) adds beyond ids[prefix, read); empty when it still ends in an incomplete
// character (or U+FFFD, which more bytes may yet turn into a character) and !force.
bool new_text(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, size_t prefix, size_t read, bool skip,
              bool spaces, bool force, std::string& out) {
  const std::vector<int32_t> context(ids.begin() + static_cast<std::ptrdiff_t>(prefix),
                                     ids.begin() + static_cast<std::ptrdiff_t>(read));
  const std::string prefix_text = tokenizer.decode(context, skip, spaces);
  const std::vector<int32_t> all(ids.begin() + static_cast<std::ptrdiff_t>(prefix), ids.end());
  const std::string text = tokenizer.decode(all, skip, spaces);
  if (!force) {
    const std::string_view tail(text);
    if (utf8::ends_with_incomplete_sequence(tail)) return false;
    if (tail.size() >= 3 && tail.substr(tail.size() - 3) == utf8::replacement_character) return false;
  }
  if (text.size() <= prefix_text.size()) {
    out.clear();
    return force;  // nothing new yet: keep the offsets
  }
  out = text.substr(prefix_text.size());  // the context decodes to a prefix of the longer text
  return true;
}

}  // namespace

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  std::string out;
  if (!new_text(*tokenizer_, ids_, prefix_offset_, read_offset_, skip_special_tokens_,
                spaces_between_special_tokens_, false, out))
    return "";
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  emitted_bytes_ += out.size();
  return out;
}

std::string IncrementalDetokenizer::flush() {
  if (read_offset_ >= ids_.size()) return "";
  std::string out;
  new_text(*tokenizer_, ids_, prefix_offset_, read_offset_, skip_special_tokens_, spaces_between_special_tokens_,
           true, out);
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  emitted_bytes_ += out.size();
  return out;
}

}  // namespace troupe

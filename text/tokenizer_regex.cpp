#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer_regex.hpp"

#include <pcre2.h>

#include <mutex>

namespace troupe {
namespace {

constexpr std::string_view kSpaceSet = "\\t-\\r\\x{85}\\p{Z}";

}  // namespace

struct TokenizerRegex::State {
  pcre2_code* code = nullptr;
  pcre2_match_data* match_data = nullptr;  // guarded by mutex (one match at a time per thread)
  bool jit = false;
  std::mutex mutex;
  ~State() {
    if (match_data) pcre2_match_data_free(match_data);
    if (code) pcre2_code_free(code);
  }
};

std::string rewrite_whitespace_classes(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char n = pattern[i + 1];
      if (n == 's' || n == 'S') {
        if (in_class) {
          if (n == 'S') return std::string(pattern);  // \S inside a class: leave as PCRE2 reads it
          out.append(kSpaceSet);
        } else {
          out.append(n == 's' ? "[" : "[^").append(kSpaceSet).append("]");
        }
      } else {
        out.push_back(c);
        out.push_back(n);
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

TokenizerRegex::TokenizerRegex() = default;
TokenizerRegex::TokenizerRegex(TokenizerRegex&&) noexcept = default;
TokenizerRegex& TokenizerRegex::operator=(TokenizerRegex&&) noexcept = default;
TokenizerRegex::~TokenizerRegex() = default;

Result<TokenizerRegex> TokenizerRegex::compile(const std::string& pattern) {
  const std::string rewritten = rewrite_whitespace_classes(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return make_error(ErrorCode::corrupt_data, "tokenizer.json: regex '" + pattern + "' does not compile at offset " +
                                                   std::to_string(error_offset) + ": " +
                                                   reinterpret_cast<const char*>(message));
  }
  TokenizerRegex regex;
  regex.state_ = std::make_unique<State>();
  regex.state_->code = code;
  regex.state_->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  regex.state_->match_data = pcre2_match_data_create_from_pattern(code, nullptr);
  return regex;
}

void TokenizerRegex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const {
  if (!state_ || text.empty()) return;
  std::unique_lock lock(state_->mutex, std::try_to_lock);
  pcre2_match_data* data = state_->match_data;
  pcre2_match_data* own = nullptr;
  if (!lock.owns_lock()) data = own = pcre2_match_data_create_from_pattern(state_->code, nullptr);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    const int rc = state_->jit ? pcre2_jit_match(state_->code, subject, text.size(), offset, 0, data, nullptr)
                               : pcre2_match(state_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {  // empty match: step over one character
      offset = begin + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
      continue;
    }
    matches.emplace_back(begin, end);
    offset = end;
  }
  if (own) pcre2_match_data_free(own);
}

}  // namespace troupe

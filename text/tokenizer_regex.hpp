#pragma once
// A PCRE2 pattern (UTF + UCP, JIT when available) with the semantics the `tokenizers` library gets
// from Oniguruma: `\s` is Unicode White_Space (PCRE2's misses U+0085, so it is rewritten).
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

class TokenizerRegex {
 public:
  static Result<TokenizerRegex> compile(const std::string& pattern);

  TokenizerRegex();
  TokenizerRegex(TokenizerRegex&&) noexcept;
  TokenizerRegex& operator=(TokenizerRegex&&) noexcept;
  ~TokenizerRegex();

  // Appends the [begin, end) byte ranges of all non-overlapping matches in text (valid UTF-8).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Rewrites \s and \S so PCRE2 matches Oniguruma's Unicode White_Space set.
std::string rewrite_whitespace_classes(std::string_view pattern);

}  // namespace troupe

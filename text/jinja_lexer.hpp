#pragma once
// Lexer for troupe's Jinja subset. Applies Jinja's whitespace rules while splitting text from
// tags: `{%-`/`-%}` strip, trim_blocks (drop the newline after a block tag) and lstrip_blocks
// (drop indentation before a block tag), as transformers configures its environment.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::jinja {

struct Token {
  enum class Type { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof };
  Type type = Type::eof;
  std::string text;  // text, name, string value (unescaped) or operator
  int64_t int_value = 0;
  double float_value = 0;
  size_t pos = 0;  // byte offset in the source
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

Result<std::vector<Token>> lex(const std::string& source, const LexOptions& options = {});

// "line L, column C" of a byte offset, for error messages.
std::string describe_position(const std::string& source, size_t pos);

}  // namespace troupe::jinja

#include "text/jinja_lexer.hpp"

#include <cctype>
#include <cstdlib>
#include <exception>

#include "text/jinja_value.hpp"

namespace troupe::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string rstrip_space(const std::string& s) {
  size_t end = s.size();
  while (end > 0 && is_space(s[end - 1])) --end;
  return s.substr(0, end);
}

class Lexer {
 public:
  Lexer(const std::string& source, const LexOptions& options) : src_(source), options_(options) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      size_t open = find_tag(pos_);
      std::string text = src_.substr(pos_, open - pos_);
      if (open == src_.size()) {
        push_text(text, pos_);
        break;
      }
      char kind = src_[open + 1];  // '{', '%' or '#'
      char sign = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (sign == '-') {
        text = rstrip_space(text);
      } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
        size_t line_begin = text.rfind('\n');
        line_begin = line_begin == std::string::npos ? 0 : line_begin + 1;
        if (line_begin > 0 || line_starting) {
          bool blank = line_begin < text.size();
          for (size_t i = line_begin; i < text.size(); ++i) blank = blank && is_space(text[i]);
          if (blank) text.resize(line_begin);
        }
      }
      push_text(text, pos_);
      pos_ = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        lex_comment(open);
      } else {
        tokens_.push_back({kind == '{' ? Token::Type::var_begin : Token::Type::block_begin, "", 0, 0, open});
        lex_tag(kind);
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    tokens_.push_back({Token::Type::eof, "", 0, 0, src_.size()});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void push_text(const std::string& text, size_t pos) {
    if (!text.empty()) tokens_.push_back({Token::Type::text, text, 0, 0, pos});
  }

  // After a tag's end marker: `-` strips all following whitespace, trim_blocks one newline.
  void after_end(bool strip, bool plus, bool is_block) {
    if (strip) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    } else if (!plus && is_block && options_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  void lex_comment(size_t open) {
    size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) fail("unclosed comment at " + describe_position(src_, open), ErrorCode::unsupported);
    bool strip = close > pos_ && src_[close - 1] == '-';
    bool plus = close > pos_ && src_[close - 1] == '+';
    pos_ = close + 2;
    after_end(strip, plus, true);
  }

  bool at_end_marker(char kind, bool& strip, bool& plus, size_t& len) const {
    const char* end = kind == '{' ? "}}" : "%}";
    strip = plus = false;
    if (src_.compare(pos_, 3, std::string("-") + end) == 0) {
      strip = true;
      len = 3;
      return true;
    }
    if (kind == '%' && src_.compare(pos_, 3, std::string("+") + end) == 0) {
      plus = true;
      len = 3;
      return true;
    }
    len = 2;
    return src_.compare(pos_, 2, end) == 0;
  }

  void lex_tag(char kind) {
    std::vector<char> balance;
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) fail("unclosed tag at end of template", ErrorCode::unsupported);
      bool strip = false, plus = false;
      size_t len = 0;
      if (balance.empty() && at_end_marker(kind, strip, plus, len)) {
        tokens_.push_back({kind == '{' ? Token::Type::var_end : Token::Type::block_end, "", 0, 0, pos_});
        pos_ += len;
        after_end(strip, plus, kind == '%');
        return;
      }
      lex_token(balance);
    }
  }

  void lex_token(std::vector<char>& balance) {
    size_t start = pos_;
    char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      tokens_.push_back({Token::Type::name, src_.substr(start, pos_ - start), 0, 0, start});
      return;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      lex_number();
      return;
    }
    if (c == '\'' || c == '"') {
      lex_string(c);
      return;
    }
    static const char* two_char[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* op : two_char) {
      if (src_.compare(pos_, 2, op) == 0) {
        pos_ += 2;
        tokens_.push_back({Token::Type::op, op, 0, 0, start});
        return;
      }
    }
    static const std::string single = "+-*/%~<>=()[]{},.:|;";
    if (single.find(c) == std::string::npos) {
      fail(std::string("unexpected character '") + c + "' at " + describe_position(src_, pos_), ErrorCode::unsupported);
    }
    if (c == '(' || c == '[' || c == '{') balance.push_back(c);
    if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) fail(std::string("unbalanced '") + c + "' at " + describe_position(src_, pos_), ErrorCode::unsupported);
      balance.pop_back();
    }
    ++pos_;
    tokens_.push_back({Token::Type::op, std::string(1, c), 0, 0, start});
  }

  void lex_number() {
    size_t start = pos_;
    bool is_float = false;
    auto digits = [&] {
      while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    };
    digits();
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t save = pos_++;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) {
        is_float = true;
        digits();
      } else {
        pos_ = save;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    Token t{is_float ? Token::Type::floating : Token::Type::integer, text, 0, 0, start};
    if (is_float) t.float_value = std::strtod(text.c_str(), nullptr);
    else t.int_value = std::strtoll(text.c_str(), nullptr, 10);
    tokens_.push_back(t);
  }

  void lex_string(char quote) {
    size_t start = pos_++;
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) fail("unterminated string at " + describe_position(src_, start), ErrorCode::unsupported);
      char c = src_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) continue;
      char e = src_[pos_++];
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case 'a': value += '\a'; break;
        case '0': value += '\0'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\n': break;
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + n > src_.size()) fail("bad escape in string at " + describe_position(src_, start), ErrorCode::unsupported);
          uint32_t cp = static_cast<uint32_t>(std::strtoul(src_.substr(pos_, n).c_str(), nullptr, 16));
          pos_ += n;
          utf8_append(value, cp);
          break;
        }
        default: value += '\\'; value += e;
      }
    }
    tokens_.push_back({Token::Type::string, value, 0, 0, start});
  }

  const std::string& src_;
  const LexOptions& options_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::string describe_position(const std::string& source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

Result<std::vector<Token>> lex(const std::string& source, const LexOptions& options) {
  // Jinja normalizes newlines and (by default) drops one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!options.keep_trailing_newline && !src.empty() && src.back() == '\n') src.pop_back();
  try {
    return Lexer(src, options).run();
  } catch (const Failure& f) {
    return make_error(f.code, "chat template: " + f.message);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, std::string("chat template: lexing failed: ") + e.what());
  }
}

}  // namespace troupe::jinja

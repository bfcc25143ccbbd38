#include "grammar/regex_parser.hpp"

#include <vector>

namespace troupe::grammar {
namespace {

constexpr int64_t kMaxRepeat = 10000;
// Groups nested deeper than this are refused: the parser and the automaton's builder recurse once
// per level, and a client's pattern must not run them out of stack (JSON bodies nest at most 64
// deep too: http/json_scan).
constexpr int kMaxNesting = 64;

// A character class as ASCII bits plus non-ASCII code points; `negated` complements both.
struct CharClass {
  ByteSet ascii;
  std::vector<uint32_t> non_ascii;
  bool all_non_ascii = false;  // \D \W \S: every non-ASCII character too
  bool negated = false;

  ExprPtr to_expr() const {
    if (!negated) {
      std::vector<ExprPtr> branches{bytes(ascii)};
      if (all_non_ascii) {
        branches.push_back(utf8_non_ascii());
      } else {
        for (uint32_t cp : non_ascii) branches.push_back(literal(utf8_encode(cp)));
      }
      return alt(std::move(branches));
    }
    ByteSet rest;
    for (int b = 0; b < 128; ++b)
      if (!ascii.test(uint8_t(b))) rest.set(uint8_t(b));
    if (all_non_ascii) return bytes(rest);
    // NOTE: a negated class with non-ASCII members still allows every non-ASCII character.
    return alt({bytes(rest), utf8_non_ascii()});
  }
};

class Parser {
 public:
  explicit Parser(const std::string& p) : p_(p) {}

  Result<ExprPtr> parse() {
    if (pos_ < p_.size() && p_[pos_] == '^') ++pos_;
    auto e = parse_alt();
    if (!error_.empty()) return make_error(ErrorCode::invalid_argument, error_);
    if (pos_ < p_.size()) return make_error(ErrorCode::invalid_argument, "unbalanced ')' at offset " + std::to_string(pos_));
    return e;
  }

 private:
  bool fail(const std::string& why) {
    if (error_.empty()) error_ = why + " at offset " + std::to_string(pos_);
    return false;
  }
  bool at_end() const { return pos_ >= p_.size(); }
  char peek() const { return p_[pos_]; }

  ExprPtr parse_alt() {
    std::vector<ExprPtr> branches{parse_seq()};
    while (!at_end() && peek() == '|' && error_.empty()) {
      ++pos_;
      branches.push_back(parse_seq());
    }
    if (branches.size() == 1) return branches[0];
    // An alternation of an empty branch stays possible: alt keeps `empty`.
    return alt(std::move(branches));
  }

  ExprPtr parse_seq() {
    std::vector<ExprPtr> parts;
    while (!at_end() && error_.empty()) {
      char c = peek();
      if (c == '|' || c == ')') break;
      if (c == '$' && pos_ + 1 == p_.size()) {
        ++pos_;
        break;
      }
      ExprPtr atom = parse_atom();
      if (!error_.empty()) return never();
      atom = parse_quantifiers(atom);
      parts.push_back(atom);
    }
    return seq(std::move(parts));
  }

  // At most one quantifier, with an optional lazy `?` or possessive `+` suffix (the same language
  // here). A second quantifier is Python's "multiple repeat" error (and would nest the expression a
  // level deeper each time).
  ExprPtr parse_quantifiers(ExprPtr atom) {
    int64_t lo = 0, hi = 0;
    if (!quantifier(&lo, &hi)) return atom;  // none, or a bad {m,n} (error_ says which)
    if (!at_end() && (peek() == '?' || peek() == '+')) ++pos_;
    int64_t lo2 = 0, hi2 = 0;
    const size_t second = pos_;
    if (quantifier(&lo2, &hi2)) {
      pos_ = second;
      fail("multiple repeat");
      return never();
    }
    return repeat(atom, lo, hi);
  }

  // A quantifier ? * + {m} {m,} {m,n} at pos_ (consumed, its bounds in lo and hi; hi -1: none);
  // false when there is none.
  bool quantifier(int64_t* lo, int64_t* hi) {
    if (at_end()) return false;
    const char c = peek();
    if (c == '?') {
      *lo = 0, *hi = 1, ++pos_;
    } else if (c == '*') {
      *lo = 0, *hi = -1, ++pos_;
    } else if (c == '+') {
      *lo = 1, *hi = -1, ++pos_;
    } else if (c != '{' || !parse_braces(lo, hi)) {
      return false;
    }
    return true;
  }

  // {m} {m,} {m,n}; false (pos_ unchanged) when `{` does not start a quantifier.
  bool parse_braces(int64_t* lo, int64_t* hi) {
    size_t q = pos_ + 1;
    auto number = [&](int64_t* out) {
      size_t start = q;
      int64_t v = 0;
      while (q < p_.size() && isdigit(static_cast<unsigned char>(p_[q])) && v <= kMaxRepeat) v = v * 10 + (p_[q++] - '0');
      *out = v;
      return q > start;
    };
    if (!number(lo)) return false;
    *hi = *lo;
    if (q < p_.size() && p_[q] == ',') {
      ++q;
      if (!number(hi)) *hi = -1;
    }
    if (q >= p_.size() || p_[q] != '}') return false;
    pos_ = q + 1;
    if (*lo > kMaxRepeat || *hi > kMaxRepeat) return fail("a repeat count over " + std::to_string(kMaxRepeat));
    if (*hi >= 0 && *hi < *lo) return fail("a repeat {m,n} with n < m");
    return true;
  }

  ExprPtr parse_atom() {
    char c = peek();
    if (c == '(') {
      if (++depth_ > kMaxNesting) {
        fail("groups nested deeper than " + std::to_string(kMaxNesting));
        return never();
      }
      ++pos_;
      if (p_.compare(pos_, 2, "?:") == 0) {
        pos_ += 2;
      } else if (!at_end() && peek() == '?') {
        fail("unsupported group syntax '(?' (lookaround, named groups)");
        return never();
      }
      ExprPtr inner = parse_alt();
      if (at_end() || peek() != ')') {
        fail("missing ')'");
        return never();
      }
      ++pos_;
      --depth_;
      return inner;
    }
    if (c == '[') return parse_class();
    if (c == '.') {
      ++pos_;
      ByteSet s;
      s.set_range(0, 0x7F);
      s.bits[0] &= ~(uint64_t(1) << '\n');
      return alt({bytes(s), utf8_non_ascii()});
    }
    if (c == '\\') {
      CharClass cls;
      if (!parse_escape(&cls)) return never();
      return cls.to_expr();
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') {
      fail(std::string("nothing to repeat before '") + c + "'");
      return never();
    }
    if (c == '^' || c == '$') {
      fail(std::string("anchor '") + c + "' inside the pattern");
      return never();
    }
    uint32_t cp = 0;
    if (!next_code_point(&cp)) return never();
    return literal(utf8_encode(cp));
  }

  bool next_code_point(uint32_t* cp) {
    const unsigned char c = static_cast<unsigned char>(p_[pos_]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + len > p_.size()) return fail("invalid UTF-8 in the pattern");
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; ++i) v = (v << 6) | (static_cast<unsigned char>(p_[pos_ + i]) & 0x3F);
    pos_ += len;
    *cp = v;
    return true;
  }

  static void add_class_letter(char k, CharClass* cls) {
    ByteSet s;
    if (k == 'd' || k == 'D') s.set_range('0', '9');
    if (k == 'w' || k == 'W') {
      s.set_range('0', '9');
      s.set_range('a', 'z');
      s.set_range('A', 'Z');
      s.set('_');
    }
    if (k == 's' || k == 'S') {
      for (char w : {' ', '\t', '\n', '\r', '\f', '\v'}) s.set(uint8_t(w));
    }
    if (k >= 'A' && k <= 'Z') {  // complement within ASCII, plus every non-ASCII character
      ByteSet r;
      for (int b = 0; b < 128; ++b)
        if (!s.test(uint8_t(b))) r.set(uint8_t(b));
      cls->ascii = cls->ascii | r;
      cls->all_non_ascii = true;
      return;
    }
    cls->ascii = cls->ascii | s;
  }

  // After a backslash: a class letter, a control escape, \uXXXX, \xHH or a literal punctuation.
  bool parse_escape(CharClass* cls, uint32_t* single = nullptr) {
    ++pos_;
    if (at_end()) return fail("a trailing backslash");
    char k = p_[pos_++];
    uint32_t cp = 0;
    switch (k) {
      case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        if (single) return fail(std::string("class escape \\") + k + " as a range bound");
        add_class_letter(k, cls);
        return true;
      case 'n': cp = '\n'; break;
      case 't': cp = '\t'; break;
      case 'r': cp = '\r'; break;
      case 'f': cp = '\f'; break;
      case 'v': cp = '\v'; break;
      case '0': cp = 0; break;
      case 'u': case 'x': {
        const int n = k == 'u' ? 4 : 2;
        if (pos_ + n > p_.size()) return fail(std::string("a short \\") + k + " escape");
        for (int i = 0; i < n; ++i) {
          char h = p_[pos_++];
          if (!isxdigit(static_cast<unsigned char>(h))) return fail(std::string("a bad \\") + k + " escape");
          cp = cp * 16 + (isdigit(static_cast<unsigned char>(h)) ? h - '0' : (tolower(h) - 'a' + 10));
        }
        break;
      }
      case 'b': case 'B': case 'A': case 'z': case 'Z':
        return fail(std::string("unsupported anchor \\") + k);
      default:
        if (isalnum(static_cast<unsigned char>(k))) return fail(std::string("unsupported escape \\") + k);
        cp = static_cast<unsigned char>(k);
    }
    if (single) {
      *single = cp;
    } else if (cp < 0x80) {
      cls->ascii.set(uint8_t(cp));
    } else {
      cls->non_ascii.push_back(cp);
    }
    return true;
  }

  ExprPtr parse_class() {
    ++pos_;  // [
    CharClass cls;
    if (!at_end() && peek() == '^') {
      cls.negated = true;
      ++pos_;
    }
    bool first = true;
    while (true) {
      if (at_end()) {
        fail("missing ']'");
        return never();
      }
      if (peek() == ']' && !first) break;
      first = false;
      uint32_t lo;
      if (peek() == '\\') {
        const size_t before = pos_;
        if (pos_ + 1 < p_.size() && std::string("dDwWsS").find(p_[pos_ + 1]) != std::string::npos) {
          if (!parse_escape(&cls)) return never();
          continue;
        }
        pos_ = before;
        if (!parse_escape(&cls, &lo)) return never();
      } else if (!next_code_point(&lo)) {
        return never();
      }
      uint32_t hi = lo;
      if (pos_ + 1 < p_.size() && peek() == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        if (peek() == '\\') {
          if (!parse_escape(&cls, &hi)) return never();
        } else if (!next_code_point(&hi)) {
          return never();
        }
        if (hi < lo) {
          fail("a class range out of order");
          return never();
        }
      }
      if (hi < 0x80) {
        cls.ascii.set_range(uint8_t(lo), uint8_t(hi));
      } else if (hi - lo > 256) {
        fail("a non-ASCII class range wider than 256 characters");
        return never();
      } else {
        for (uint32_t cp = lo; cp <= hi; ++cp) {
          if (cp < 0x80) {
            cls.ascii.set(uint8_t(cp));
          } else {
            cls.non_ascii.push_back(cp);
          }
        }
      }
    }
    ++pos_;  // ]
    return cls.to_expr();
  }

  const std::string& p_;
  size_t pos_ = 0;
  int depth_ = 0;  // groups open at pos_
  std::string error_;
};

}  // namespace

Result<ExprPtr> parse_regex(const std::string& pattern) {
  Parser parser(pattern);
  auto e = parser.parse();
  if (!e.ok()) return e;
  if (is_never(e.value())) return make_error(ErrorCode::invalid_argument, "the pattern matches nothing");
  return e;
}

}  // namespace troupe::grammar

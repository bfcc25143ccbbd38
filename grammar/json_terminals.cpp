#include "grammar/json_terminals.hpp"

#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

namespace troupe::grammar {
namespace {

constexpr uint64_t kMaxBound = 1'000'000'000'000'000'000ULL;  // 1e18: bounds past it are refused

ExprPtr digit() { return byte_range('0', '9'); }

// Decimal strings between a and b (same length, a <= b), leading zeros as given.
ExprPtr digits_between(const std::string& a, const std::string& b) {
  if (a.empty()) return empty();
  const size_t n = a.size() - 1;
  if (a[0] == b[0]) return seq({literal(a.substr(0, 1)), digits_between(a.substr(1), b.substr(1))});
  if (a.substr(1) == std::string(n, '0') && b.substr(1) == std::string(n, '9'))
    return seq({byte_range(uint8_t(a[0]), uint8_t(b[0])), repeat(digit(), int64_t(n), int64_t(n))});
  std::vector<ExprPtr> parts{seq({literal(a.substr(0, 1)), digits_between(a.substr(1), std::string(n, '9'))})};
  if (b[0] - a[0] > 1)
    parts.push_back(seq({byte_range(uint8_t(a[0] + 1), uint8_t(b[0] - 1)), repeat(digit(), int64_t(n), int64_t(n))}));
  parts.push_back(seq({literal(b.substr(0, 1)), digits_between(std::string(n, '0'), b.substr(1))}));
  return alt(std::move(parts));
}

uint64_t pow10(size_t k) {
  uint64_t v = 1;
  while (k--) v *= 10;
  return v;
}

// Non-negative integers in [lo, hi] written without leading zeros; hi nullopt: up to 19 digits.
ExprPtr nonneg_between(uint64_t lo, std::optional<uint64_t> hi) {
  std::vector<ExprPtr> parts;
  const size_t max_len = hi ? std::to_string(*hi).size() : 19;
  for (size_t len = std::to_string(lo).size(); len <= max_len; ++len) {
    const uint64_t first = len == 1 ? 0 : pow10(len - 1);
    const uint64_t last = len == 19 ? 9'999'999'999'999'999'999ULL : pow10(len) - 1;
    const uint64_t a = std::max(lo, first);
    const uint64_t b = hi ? std::min(*hi, last) : last;
    if (a > b) continue;
    parts.push_back(digits_between(std::to_string(a), std::to_string(b)));
  }
  return alt(std::move(parts));
}

}  // namespace

JsonTerminals::JsonTerminals(const JsonGrammarOptions& options) : options_(options) {
  ByteSet ws;
  for (char c : {' ', '\t', '\n', '\r'}) ws.set(uint8_t(c));
  ws_ = repeat(bytes(ws), 0, options_.max_whitespace);
  ByteSet plain;  // printable ASCII but '"' and '\'
  plain.set_range(0x20, 0x7F);
  plain.bits[0] &= ~(uint64_t(1) << '"');
  plain.bits[1] &= ~(uint64_t(1) << ('\\' - 64));
  ByteSet simple_escape;
  for (char c : {'"', '\\', '/', 'b', 'f', 'n', 'r', 't'}) simple_escape.set(uint8_t(c));
  ByteSet hex;
  hex.set_range('0', '9');
  hex.set_range('a', 'f');
  hex.set_range('A', 'F');
  char_ = alt({bytes(plain), utf8_non_ascii(),
               seq({literal("\\"), alt({bytes(simple_escape), seq({literal("u"), repeat(bytes(hex), 4, 4)})})})});
  integer_ = seq({opt(literal("-")), alt({literal("0"), seq({byte_range('1', '9'), repeat(digit(), 0, 18)})})});
  fraction_ = seq({literal("."), repeat(digit(), 1, 16)});
  ByteSet e;
  e.set('e');
  e.set('E');
  ByteSet sign;
  sign.set('+');
  sign.set('-');
  exponent_ = seq({bytes(e), opt(bytes(sign)), repeat(digit(), 1, 2)});  // stays inside a double
}

ExprPtr JsonTerminals::string(int64_t min_chars, int64_t max_chars) const {
  return seq({literal("\""), repeat(char_, min_chars, max_chars), literal("\"")});
}

Result<ExprPtr> JsonTerminals::number(bool is_integer, const nlohmann::ordered_json& s, const std::string& path) const {
  const char* keys[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
  std::optional<double> bound[4];
  for (int k = 0; k < 4; ++k) {
    if (!s.contains(keys[k])) continue;
    const auto& v = s[keys[k]];
    if (!v.is_number()) return make_error(ErrorCode::invalid_argument, "schema at " + path + "/" + keys[k] + ": must be a number");
    const double d = v.get<double>();
    if (d != std::floor(d) && !is_integer)
      return make_error(ErrorCode::invalid_argument, "schema at " + path + "/" + keys[k] +
                                                         ": only integral bounds are supported for numbers");
    if (std::fabs(d) > double(kMaxBound))
      return make_error(ErrorCode::invalid_argument, "schema at " + path + "/" + keys[k] + ": bounds past 1e18 are not supported");
    if (!is_integer && k >= 2)
      return make_error(ErrorCode::invalid_argument, "schema at " + path + "/" + keys[k] +
                                                         ": exclusive bounds are supported for integers only");
    bound[k] = d;
  }
  std::optional<int64_t> lo, hi;  // inclusive
  if (bound[0]) lo = int64_t(std::ceil(*bound[0]));
  if (bound[2]) lo = std::max(lo.value_or(std::numeric_limits<int64_t>::min()), int64_t(std::floor(*bound[2])) + 1);
  if (bound[1]) hi = int64_t(std::floor(*bound[1]));
  if (bound[3]) hi = std::min(hi.value_or(std::numeric_limits<int64_t>::max()), int64_t(std::ceil(*bound[3])) - 1);
  if (!lo && !hi) return is_integer ? integer_ : seq({integer_, opt(fraction_), opt(exponent_)});
  if (lo && hi && *lo > *hi) return make_error(ErrorCode::invalid_argument, "schema at " + path + ": minimum is above maximum");
  if (is_integer) {
    std::vector<ExprPtr> parts;
    if (!hi || *hi >= 0) parts.push_back(nonneg_between(uint64_t(std::max<int64_t>(lo.value_or(0), 0)),
                                                        hi ? std::optional<uint64_t>(uint64_t(*hi)) : std::nullopt));
    if (!lo || *lo < 0) {  // -x with x in [max(1, -hi), -lo]
      const uint64_t a = hi && *hi < 0 ? uint64_t(-*hi) : 1;
      parts.push_back(seq({literal("-"), nonneg_between(a, lo ? std::optional<uint64_t>(uint64_t(-*lo)) : std::nullopt)}));
    }
    return alt(std::move(parts));
  }
  // Numbers: x in [a, b] for a >= 0 is int in [a, b-1] with any fraction, or b with a zero fraction.
  auto nonneg_number = [&](uint64_t a, std::optional<uint64_t> b) -> ExprPtr {
    const ExprPtr zeros = opt(seq({literal("."), repeat(literal("0"), 1, 16)}));
    if (!b) return seq({nonneg_between(a, std::nullopt), opt(fraction_)});
    std::vector<ExprPtr> parts{seq({literal(std::to_string(*b)), zeros})};
    if (*b > a) parts.push_back(seq({nonneg_between(a, *b - 1), opt(fraction_)}));
    return alt(std::move(parts));
  };
  std::vector<ExprPtr> parts;
  if (!hi || *hi >= 0)
    parts.push_back(nonneg_number(uint64_t(std::max<int64_t>(lo.value_or(0), 0)),
                                  hi ? std::optional<uint64_t>(uint64_t(*hi)) : std::nullopt));
  if (!lo || *lo < 0) {  // -x with x in [max(0, -hi), -lo]; "-0.5" is negative
    const uint64_t a = hi && *hi < 0 ? uint64_t(-*hi) : 0;
    parts.push_back(seq({literal("-"), nonneg_number(a, lo ? std::optional<uint64_t>(uint64_t(-*lo)) : std::nullopt)}));
  }
  return alt(std::move(parts));
}

ExprPtr JsonTerminals::any_value(int64_t depth) const {
  std::vector<ExprPtr> branches{string(0, -1), seq({integer_, opt(fraction_), opt(exponent_)}), literal("true"),
                                literal("false"), literal("null")};
  if (depth > 0) {
    branches.push_back(any_object(depth));
    const ExprPtr item = any_value(depth - 1);
    const ExprPtr sep = seq({ws_, literal(","), ws_});
    branches.push_back(seq({literal("["), ws_, opt(seq({item, star(seq({sep, item}))})), ws_, literal("]")}));
  }
  return alt(std::move(branches));
}

ExprPtr JsonTerminals::any_object(int64_t depth) const {
  const ExprPtr v = any_value(std::max<int64_t>(depth - 1, 0));
  const ExprPtr kv = seq({string(0, -1), ws_, literal(":"), ws_, v});
  const ExprPtr sep = seq({ws_, literal(","), ws_});
  return seq({literal("{"), ws_, opt(seq({kv, star(seq({sep, kv}))})), ws_, literal("}")});
}

ExprPtr json_escaped(const ExprPtr& e) {
  switch (e->kind) {
    case Expr::Kind::bytes: {
      ByteSet raw;
      std::vector<ExprPtr> branches;
      for (int b = 0; b < 256; ++b) {
        if (!e->set.test(uint8_t(b))) continue;
        if (b == '"') {
          branches.push_back(literal("\\\""));
        } else if (b == '\\') {
          branches.push_back(literal("\\\\"));
        } else if (b < 0x20) {
          const char* named = b == '\n' ? "\\n" : b == '\t' ? "\\t" : b == '\r' ? "\\r" : b == '\b' ? "\\b" : b == '\f' ? "\\f" : nullptr;
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", b);
          branches.push_back(literal(named ? named : buf));
        } else {
          raw.set(uint8_t(b));
        }
      }
      branches.push_back(bytes(raw));
      return alt(std::move(branches));
    }
    case Expr::Kind::seq:
    case Expr::Kind::alt: {
      std::vector<ExprPtr> parts;
      for (const auto& c : e->children) parts.push_back(json_escaped(c));
      return e->kind == Expr::Kind::seq ? seq(std::move(parts)) : alt(std::move(parts));
    }
    case Expr::Kind::repeat:
      return repeat(json_escaped(e->children[0]), e->min, e->max);
    default:
      return e;
  }
}

}  // namespace troupe::grammar

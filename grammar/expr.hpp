#pragma once
// The grammar's expression tree: byte sets, sequences, alternations, bounded repeats and the
// members of a JSON object (required / optional, in order). Regexes, JSON schemas and choices all
// compile into one Expr; byte_automaton.hpp turns it into an automaton over bytes.
//
// NOTE: every language here is regular (recursion is unrolled to a fixed depth by the compilers),
// so a matcher's state is one automaton state and a token mask depends on nothing else.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace troupe::grammar {

struct ByteSet {
  std::array<uint64_t, 4> bits{};
  void set(uint8_t b) { bits[b >> 6] |= uint64_t(1) << (b & 63); }
  void set_range(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) set(uint8_t(b));
  }
  bool test(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  bool empty() const { return !(bits[0] | bits[1] | bits[2] | bits[3]); }
  ByteSet operator|(const ByteSet& o) const {
    ByteSet r;
    for (int i = 0; i < 4; ++i) r.bits[i] = bits[i] | o.bits[i];
    return r;
  }
};

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  // never: the empty language (a branch that cannot be taken); empty: the empty string.
  enum class Kind : uint8_t { never, empty, bytes, seq, alt, repeat, object_body };
  Kind kind = Kind::empty;
  ByteSet set;                    // bytes
  std::vector<ExprPtr> children;  // seq, alt, repeat (one), object_body (the members)
  int64_t min = 0, max = -1;      // repeat; max -1: unbounded
  std::vector<bool> required;     // object_body: per member
  ExprPtr separator;              // object_body: between two members present
};

// Builders simplify as they go: a seq with a never part is never, an alt drops never branches.
ExprPtr never();
ExprPtr empty();
ExprPtr bytes(const ByteSet& set);
ExprPtr byte_range(uint8_t lo, uint8_t hi);
ExprPtr literal(const std::string& text);  // the bytes of text, in order
ExprPtr seq(std::vector<ExprPtr> parts);
ExprPtr alt(std::vector<ExprPtr> branches);
ExprPtr repeat(ExprPtr e, int64_t min, int64_t max);
inline ExprPtr opt(ExprPtr e) { return repeat(std::move(e), 0, 1); }
inline ExprPtr star(ExprPtr e) { return repeat(std::move(e), 0, -1); }
inline ExprPtr plus(ExprPtr e) { return repeat(std::move(e), 1, -1); }
// Members in order, each present or (when not required) left out, `separator` between two present.
ExprPtr object_body(std::vector<ExprPtr> members, std::vector<bool> required, ExprPtr separator);

inline bool is_never(const ExprPtr& e) { return e->kind == Expr::Kind::never; }

// One UTF-8 encoded code point, any (U+0000..U+10FFFF, no surrogates), or only those >= U+0080.
ExprPtr utf8_any();
ExprPtr utf8_non_ascii();
// UTF-8 of a code point.
std::string utf8_encode(uint32_t cp);

}  // namespace troupe::grammar

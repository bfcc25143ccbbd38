#include "grammar/expr.hpp"

namespace troupe::grammar {
namespace {

ExprPtr make(Expr e) { return std::make_shared<const Expr>(std::move(e)); }

}  // namespace

ExprPtr never() {
  static const ExprPtr n = make(Expr{Expr::Kind::never, {}, {}, 0, -1, {}, nullptr});
  return n;
}

ExprPtr empty() {
  static const ExprPtr e = make(Expr{Expr::Kind::empty, {}, {}, 0, -1, {}, nullptr});
  return e;
}

ExprPtr bytes(const ByteSet& set) {
  if (set.empty()) return never();
  Expr e;
  e.kind = Expr::Kind::bytes;
  e.set = set;
  return make(std::move(e));
}

ExprPtr byte_range(uint8_t lo, uint8_t hi) {
  ByteSet s;
  s.set_range(lo, hi);
  return bytes(s);
}

ExprPtr literal(const std::string& text) {
  std::vector<ExprPtr> parts;
  for (unsigned char c : text) parts.push_back(byte_range(c, c));
  return seq(std::move(parts));
}

ExprPtr seq(std::vector<ExprPtr> parts) {
  Expr e;
  e.kind = Expr::Kind::seq;
  for (auto& p : parts) {
    if (is_never(p)) return never();
    if (p->kind == Expr::Kind::empty) continue;
    if (p->kind == Expr::Kind::seq) {
      e.children.insert(e.children.end(), p->children.begin(), p->children.end());
    } else {
      e.children.push_back(std::move(p));
    }
  }
  if (e.children.empty()) return empty();
  if (e.children.size() == 1) return e.children[0];
  return make(std::move(e));
}

ExprPtr alt(std::vector<ExprPtr> branches) {
  Expr e;
  e.kind = Expr::Kind::alt;
  ByteSet merged;  // single-byte branches merge into one set
  bool has_bytes = false;
  for (auto& b : branches) {
    if (is_never(b)) continue;
    if (b->kind == Expr::Kind::bytes) {
      merged = merged | b->set;
      has_bytes = true;
    } else if (b->kind == Expr::Kind::alt) {
      e.children.insert(e.children.end(), b->children.begin(), b->children.end());
    } else {
      e.children.push_back(std::move(b));
    }
  }
  if (has_bytes) e.children.push_back(bytes(merged));
  if (e.children.empty()) return never();
  if (e.children.size() == 1) return e.children[0];
  return make(std::move(e));
}

ExprPtr repeat(ExprPtr inner, int64_t min, int64_t max) {
  if (max >= 0 && max < min) return never();
  if (is_never(inner)) return min == 0 ? empty() : never();
  if (inner->kind == Expr::Kind::empty || max == 0) return empty();
  if (min == 1 && max == 1) return inner;
  Expr e;
  e.kind = Expr::Kind::repeat;
  e.children.push_back(std::move(inner));
  e.min = min;
  e.max = max;
  return make(std::move(e));
}

ExprPtr object_body(std::vector<ExprPtr> members, std::vector<bool> required, ExprPtr separator) {
  Expr e;
  e.kind = Expr::Kind::object_body;
  for (size_t i = 0; i < members.size(); ++i) {
    if (is_never(members[i])) {
      if (required[i]) return never();
      continue;
    }
    e.children.push_back(std::move(members[i]));
    e.required.push_back(required[i]);
  }
  if (e.children.empty()) return empty();
  e.separator = std::move(separator);
  return make(std::move(e));
}

ExprPtr utf8_non_ascii() {
  auto cont = byte_range(0x80, 0xBF);
  return alt({
      seq({byte_range(0xC2, 0xDF), cont}),
      seq({byte_range(0xE0, 0xE0), byte_range(0xA0, 0xBF), cont}),
      seq({byte_range(0xE1, 0xEC), cont, cont}),
      seq({byte_range(0xED, 0xED), byte_range(0x80, 0x9F), cont}),
      seq({byte_range(0xEE, 0xEF), cont, cont}),
      seq({byte_range(0xF0, 0xF0), byte_range(0x90, 0xBF), cont, cont}),
      seq({byte_range(0xF1, 0xF3), cont, cont, cont}),
      seq({byte_range(0xF4, 0xF4), byte_range(0x80, 0x8F), cont, cont}),
  });
}

ExprPtr utf8_any() { return alt({byte_range(0x00, 0x7F), utf8_non_ascii()}); }

std::string utf8_encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
  return out;
}

}  // namespace troupe::grammar

#include "grammar/byte_automaton.hpp"

#include <algorithm>

namespace troupe::grammar {
namespace {

// NFA states build() would make, saturating at `limit` (so a huge schema fails before building).
int64_t estimate_states(const Expr& e, int64_t limit) {
  auto sat = [limit](int64_t x) { return x > limit ? limit + 1 : x; };
  switch (e.kind) {
    case Expr::Kind::never:
    case Expr::Kind::empty: return 1;
    case Expr::Kind::bytes: return 2;
    case Expr::Kind::seq:
    case Expr::Kind::alt: {
      int64_t n = 2;
      for (const auto& c : e.children) n = sat(n + estimate_states(*c, limit));
      return n;
    }
    case Expr::Kind::repeat: {
      const int64_t copies = e.max < 0 ? e.min + 1 : e.max;
      const int64_t inner = estimate_states(*e.children[0], limit);
      if (inner > 0 && copies > limit / inner) return limit + 1;
      return sat(3 + copies * inner);
    }
    case Expr::Kind::object_body: {
      int64_t n = 1;
      const int64_t sep = estimate_states(*e.separator, limit);
      for (const auto& c : e.children) n = sat(n + estimate_states(*c, limit) + sep + 2);
      return n;
    }
  }
  return 1;
}

}  // namespace

Status ByteAutomaton::check_size(const ExprPtr& expr, int64_t max_nfa_states) {
  if (is_never(expr)) return make_error(ErrorCode::invalid_argument, "the grammar accepts no output at all");
  if (estimate_states(*expr, max_nfa_states) > max_nfa_states)
    return make_error(ErrorCode::invalid_argument, "the grammar is too large (over " + std::to_string(max_nfa_states) +
                                                       " automaton states); bound fewer repeats or lengths");
  return Status::success();
}

Result<std::unique_ptr<ByteAutomaton>> ByteAutomaton::compile(const ExprPtr& expr, int64_t max_nfa_states) {
  TROUPE_TRY(check_size(expr, max_nfa_states));
  std::unique_ptr<ByteAutomaton> a(new ByteAutomaton());
  a->max_nfa_states_ = max_nfa_states;
  Frag f = a->build(*expr);
  if (a->too_large_)
    return make_error(ErrorCode::invalid_argument, "the grammar is too large (over " + std::to_string(max_nfa_states) +
                                                       " automaton states); bound fewer repeats or lengths");
  a->nfa_accept_ = f.end;
  a->mark_.assign(a->nfa_.size(), 0);
  a->intern(a->closure({f.start}));  // DFA state 0
  return a;
}

int32_t ByteAutomaton::add_nfa_state() {
  if (int64_t(nfa_.size()) >= max_nfa_states_) {
    too_large_ = true;
    if (!nfa_.empty()) return 0;  // keep building harmlessly; compile() reports the error
  }
  nfa_.emplace_back();
  return int32_t(nfa_.size() - 1);
}

ByteAutomaton::Frag ByteAutomaton::build(const Expr& e) {
  if (too_large_) return {0, 0};
  switch (e.kind) {
    case Expr::Kind::never:  // never reached: builders remove never branches
    case Expr::Kind::empty: {
      int32_t s = add_nfa_state();
      return {s, s};
    }
    case Expr::Kind::bytes: {
      int32_t s = add_nfa_state(), t = add_nfa_state();
      if (too_large_) return {0, 0};
      for (int b = 0; b < 256;) {
        if (!e.set.test(uint8_t(b))) {
          ++b;
          continue;
        }
        int lo = b;
        while (b + 1 < 256 && e.set.test(uint8_t(b + 1))) ++b;
        nfa_[s].edges.push_back(Edge{uint8_t(lo), uint8_t(b), t});
        ++b;
      }
      return {s, t};
    }
    case Expr::Kind::seq: {
      Frag first = build(*e.children[0]);
      Frag cur = first;
      for (size_t i = 1; i < e.children.size(); ++i) {
        Frag next = build(*e.children[i]);
        if (too_large_) return {0, 0};
        link(cur.end, next.start);
        cur = next;
      }
      return {first.start, cur.end};
    }
    case Expr::Kind::alt: {
      int32_t s = add_nfa_state(), t = add_nfa_state();
      for (const auto& c : e.children) {
        Frag f = build(*c);
        if (too_large_) return {0, 0};
        link(s, f.start);
        link(f.end, t);
      }
      return {s, t};
    }
    case Expr::Kind::repeat: {
      const Expr& inner = *e.children[0];
      int32_t s = add_nfa_state();
      int32_t cur = s;
      for (int64_t i = 0; i < e.min && !too_large_; ++i) {
        Frag f = build(inner);
        link(cur, f.start);
        cur = f.end;
      }
      if (e.max < 0) {  // a loop: cur -> inner -> cur
        int32_t loop = add_nfa_state();
        Frag f = build(inner);
        if (too_large_) return {0, 0};
        link(cur, loop);
        link(loop, f.start);
        link(f.end, loop);
        return {s, loop};
      }
      int32_t t = add_nfa_state();
      for (int64_t i = e.min; i < e.max && !too_large_; ++i) {
        link(cur, t);
        Frag f = build(inner);
        link(cur, f.start);
        cur = f.end;
      }
      if (too_large_) return {0, 0};
      link(cur, t);
      return {s, t};
    }
    case Expr::Kind::object_body:
      return build_object_body(e);
  }
  return {0, 0};
}

// Members m_0..m_{n-1}, sep between two present. With `end` the common exit:
//   PR(j) = m_j R(j+1)                         (m_j present, then the rest)
//   R(j)  = sep PR(j) [| R(j+1) if optional]   (something present before j)
//   S(j)  = PR(j)     [| S(j+1) if optional]   (nothing present yet)
// Each of PR, R, S is built once per j and shared, so n optional members cost O(n), not 2^n.
ByteAutomaton::Frag ByteAutomaton::build_object_body(const Expr& e) {
  const size_t n = e.children.size();
  int32_t end = add_nfa_state();
  std::vector<int32_t> r(n + 1), s(n + 1), pr(n);
  r[n] = end;
  s[n] = end;
  for (size_t k = n; k-- > 0;) {
    Frag m = build(*e.children[k]);
    if (too_large_) return {0, 0};
    pr[k] = m.start;
    link(m.end, r[k + 1]);
    Frag sep = build(*e.separator);
    r[k] = add_nfa_state();
    link(r[k], sep.start);
    link(sep.end, pr[k]);
    s[k] = add_nfa_state();
    link(s[k], pr[k]);
    if (!e.required[k]) {
      link(r[k], r[k + 1]);
      link(s[k], s[k + 1]);
    }
  }
  return {s[0], end};
}

std::vector<int32_t> ByteAutomaton::closure(std::vector<int32_t> seeds) {
  ++epoch_;
  std::vector<int32_t> out;
  std::vector<int32_t> stack = std::move(seeds);
  for (int32_t x : stack) mark_[x] = epoch_;
  while (!stack.empty()) {
    int32_t x = stack.back();
    stack.pop_back();
    // Keep only states that matter for the future: with byte edges, or the accept state.
    if (!nfa_[x].edges.empty() || x == nfa_accept_) out.push_back(x);
    for (int32_t y : nfa_[x].eps)
      if (mark_[y] != epoch_) {
        mark_[y] = epoch_;
        stack.push_back(y);
      }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int32_t ByteAutomaton::intern(std::vector<int32_t> set) {
  if (set.empty()) return kDead;
  auto it = dfa_ids_.find(set);
  if (it != dfa_ids_.end()) return it->second;
  const int32_t id = int32_t(dfa_sets_.size());
  const bool accepting = std::binary_search(set.begin(), set.end(), nfa_accept_);
  dfa_ids_.emplace(set, id);
  dfa_sets_.push_back(std::move(set));
  table_.resize(table_.size() + 256, kUnknown);
  accepting_.push_back(accepting ? 1 : 0);
  return id;
}

// Fills the whole row of `state` at once: bytes with the same successor NFA states share one
// closure (a string state's ~200 printable bytes lead to one place), so a cold row costs a few
// closures, not 256.
int32_t ByteAutomaton::fill(int32_t state, uint8_t b) {
  std::map<std::vector<int32_t>, int32_t> row_memo;
  std::vector<int32_t> seeds;
  const std::vector<int32_t> set = dfa_sets_[state];  // copy: intern() may grow dfa_sets_
  for (int c = 0; c < 256; ++c) {
    seeds.clear();
    for (int32_t x : set)
      for (const Edge& edge : nfa_[x].edges)
        if (edge.lo <= c && c <= edge.hi) seeds.push_back(edge.to);
    int32_t next = kDead;
    if (!seeds.empty()) {
      std::sort(seeds.begin(), seeds.end());
      seeds.erase(std::unique(seeds.begin(), seeds.end()), seeds.end());
      auto it = row_memo.find(seeds);
      if (it != row_memo.end()) {
        next = it->second;
      } else {
        next = intern(closure(seeds));
        row_memo.emplace(seeds, next);
      }
    }
    table_[size_t(state) * 256 + c] = next;
  }
  return table_[size_t(state) * 256 + b];
}

bool ByteAutomaton::has_next(int32_t state) {
  for (int32_t x : dfa_sets_[state])
    if (!nfa_[x].edges.empty()) return true;
  return false;
}

}  // namespace troupe::grammar

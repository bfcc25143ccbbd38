#pragma once
// An Expr compiled to an automaton over bytes: a Thompson NFA, determinized lazily (a DFA state is
// the epsilon closure of a set of NFA states, made the first time a byte leads to it).
//
// NOTE: not thread-safe: step() may add states. One thread at a time (the engine's mask thread,
// or the engine thread after it joined).
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "grammar/expr.hpp"
#include "runtime/result.hpp"

namespace troupe::grammar {

class ByteAutomaton {
 public:
  static constexpr int32_t kDead = -1;
  // Errors when the NFA would pass `max_nfa_states` (a schema too large to compile).
  static Result<std::unique_ptr<ByteAutomaton>> compile(const ExprPtr& expr, int64_t max_nfa_states = 2'000'000);

  // What compile() would say about the size, without building anything (cheap validation).
  static Status check_size(const ExprPtr& expr, int64_t max_nfa_states = 2'000'000);

  int32_t start() const { return 0; }
  // The state after byte b, or kDead.
  int32_t step(int32_t state, uint8_t b) {
    int32_t next = table_[size_t(state) * 256 + b];
    return next != kUnknown ? next : fill(state, b);
  }
  bool is_accepting(int32_t state) const { return accepting_[state] != 0; }
  // True when some byte leads on from `state` (computes the state's transitions).
  bool has_next(int32_t state);
  int64_t num_states() const { return int64_t(accepting_.size()); }
  int64_t num_nfa_states() const { return int64_t(nfa_.size()); }

 private:
  static constexpr int32_t kUnknown = -2;
  struct Edge {
    uint8_t lo, hi;
    int32_t to;
  };
  struct NfaState {
    std::vector<int32_t> eps;
    std::vector<Edge> edges;
  };
  struct Frag {
    int32_t start, end;
  };

  int32_t add_nfa_state();
  Frag build(const Expr& e);
  Frag build_object_body(const Expr& e);
  void link(int32_t from, int32_t to) { nfa_[from].eps.push_back(to); }
  int32_t fill(int32_t state, uint8_t b);
  int32_t intern(std::vector<int32_t> closure);
  std::vector<int32_t> closure(std::vector<int32_t> seeds);

  std::vector<NfaState> nfa_;
  int32_t nfa_accept_ = -1;
  int64_t max_nfa_states_ = 0;
  bool too_large_ = false;
  std::vector<std::vector<int32_t>> dfa_sets_;  // per DFA state: sorted NFA states
  std::map<std::vector<int32_t>, int32_t> dfa_ids_;
  std::vector<int32_t> table_;     // [num_states, 256]
  std::vector<uint8_t> accepting_;
  std::vector<uint32_t> mark_;     // scratch for closures
  uint32_t epoch_ = 0;
};

}  // namespace troupe::grammar

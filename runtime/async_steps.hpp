#pragma once
// A model whose steps can be started now and collected later, several in flight at once: a
// pipeline of k stages holds up to k, one per stage, so every stage works on every step (vLLM's
// virtual engines). The engine keeps that many micro-batches of different sequences in flight.
//
//   ticket = start_step(batch)   this process's layers run; the rest is handed on
//   ...                          (start further steps of other sequences)
//   logits = finish_step(ticket) tickets are finished in the order they were started
//
// A Model that is also an AsyncSteps: the engine finds it with dynamic_cast (ModelRunner).
#include <cstdint>

#include "runtime/forward_batch.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/model.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class AsyncSteps {
 public:
  virtual ~AsyncSteps() = default;
  // Steps that may be started before the first of them is finished (1: one at a time).
  virtual int64_t max_steps_in_flight() const = 0;
  // The batch (and its block tables) is not read after this returns. Errors as Model::forward's.
  virtual Result<uint64_t> start_step(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) = 0;
  // The logits of a started step (Model::forward's result); waits for them.
  virtual Result<Tensor> finish_step(uint64_t ticket) = 0;
};

}  // namespace troupe

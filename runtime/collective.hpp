#pragma once
// The ranks of one tensor-parallel group summing partial results: after a row-parallel linear
// (o_proj, down_proj) each rank holds a partial [num_tokens, hidden] that all must add up.
// Implementations: ThreadCollective (ranks are threads of one process, host memory; the CPU
// backend and tests) and cuda::NcclCollective (one GPU per rank, NCCL all-reduce).
#include <cstdint>
#include <string>

#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t size() const = 0;
  // In place: `t` (f32, same shape on every rank, on this rank's device) becomes the elementwise
  // sum over the ranks. Every rank must call it, in the same order. unavailable once aborted;
  // timeout when a rank does not arrive in time.
  virtual Status all_reduce_sum(Tensor& t) = 0;
  // Thread-safe: every waiting and later call fails (a rank failed, or the group is stopping).
  virtual void abort(const std::string& why) = 0;
};

}  // namespace troupe

#pragma once
// The ranks of one tensor-parallel group exchanging partial results: after a row-parallel linear
// (o_proj, down_proj) or the vocabulary-parallel embedding each rank holds a partial
// [num_tokens, hidden] that all must add up (all_reduce_sum); after the vocabulary-parallel LM
// head each holds its block of logit columns that all need whole (all_gather).
// Implementations: ThreadCollective (ranks are threads of one process, host memory; the CPU
// backend and tests), ProcessCollective (ranks are processes, host memory over sockets) and
// cuda::NcclCollective (one GPU per rank, NCCL).
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
  // `local` [rows, cols] (f32, same shape on every rank) goes to columns [rank * cols,
  // (rank + 1) * cols) of `out` [rows, width] on every rank, as vLLM's all_gather(dim=-1).
  // width <= size * cols: columns past it are dropped (the padding of a vocabulary that does not
  // divide by size). Every rank must call it, in the same order; errors as all_reduce_sum.
  virtual Status all_gather(const Tensor& local, Tensor& out) = 0;
  // Thread-safe: every waiting and later call fails (a rank failed, or the group is stopping).
  virtual void abort(const std::string& why) = 0;
};

// all_gather's contract for one rank's tensors: invalid_argument unless `local` is [rows, cols]
// and `out` [rows, width] with width <= size * cols, both f32.
Status check_all_gather_shapes(const Tensor& local, const Tensor& out, int64_t size);

// Host memory: rank r's block `blocks[r]` ([rows, cols], row-major) into columns
// [r * cols, min((r + 1) * cols, width)) of `out` [rows, width].
void place_gathered_columns(const float* const* blocks, int64_t size, int64_t rows, int64_t cols, float* out,
                            int64_t width);

}  // namespace troupe

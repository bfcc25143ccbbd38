#pragma once
// The ranks of one tensor-parallel group exchanging partial results: after a row-parallel linear
// (o_proj, down_proj) or the vocabulary-parallel embedding each rank holds a partial
// [num_tokens, hidden] that all must add up (all_reduce_sum); after the vocabulary-parallel LM
// head each holds its block of logit columns that all need whole (all_gather). Expert parallel
// with token dispatch (--all2all-backend all_to_all) sends each token to the ranks that hold its
// experts and their results back (all_to_all_counts, then all_to_all).
// Implementations: ThreadCollective (ranks are threads of one process, host memory; the CPU
// backend and tests), ProcessCollective (ranks are processes, host memory over sockets) and
// cuda::NcclCollective (one GPU per rank, NCCL).
#include <cstdint>
#include <string>
#include <vector>

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
  // Rows to and from every rank. `send_rows[d]`: how many rows this rank sends rank d (size
  // entries); returns recv_rows, recv_rows[s] = what rank s sends here. Every rank must call it,
  // in the same order; errors as all_reduce_sum.
  virtual Result<std::vector<int64_t>> all_to_all_counts(const std::vector<int64_t>& send_rows) = 0;
  // `send` [S, cols] holds, in rank order, send_rows[d] rows for rank d (their sum is S); `recv`
  // [R, cols] gets, in rank order, recv_rows[s] rows from rank s (their sum is R). Any dtype, the
  // same on both sides (rows move as bytes); the rows a rank sends itself are copied. recv_rows
  // must be what all_to_all_counts returned for these send_rows: the host collectives check it
  // (invalid_argument, the group aborts); NCCL cannot. Every rank must call it, in the same order;
  // errors as all_reduce_sum.
  virtual Status all_to_all(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                            const std::vector<int64_t>& recv_rows) = 0;
  // Thread-safe: every waiting and later call fails (a rank failed, or the group is stopping).
  virtual void abort(const std::string& why) = 0;
};

// all_to_all's contract for one rank's arguments: invalid_argument unless both counts have `size`
// non-negative entries summing to the tensors' rows, and send and recv are 2-D of one dtype and
// width.
Status check_all_to_all_shapes(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                               const std::vector<int64_t>& recv_rows, int64_t size);

// all_gather's contract for one rank's tensors: invalid_argument unless `local` is [rows, cols]
// and `out` [rows, width] with width <= size * cols, both f32.
Status check_all_gather_shapes(const Tensor& local, const Tensor& out, int64_t size);

// Host memory: rank r's block `blocks[r]` ([rows, cols], row-major) into columns
// [r * cols, min((r + 1) * cols, width)) of `out` [rows, width].
void place_gathered_columns(const float* const* blocks, int64_t size, int64_t rows, int64_t cols, float* out,
                            int64_t width);

}  // namespace troupe

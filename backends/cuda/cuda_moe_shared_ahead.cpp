// CudaBackend::moe_shared_ahead (runtime/moe_experts.hpp): a decode batch's packed shared expert on
// a second stream, beside the router and the routing.
//
// Why: in R1's decode step at batch 1 (stop 41's H200 trace, bench/results/trace_dsv3_b1_*) the
// router GEMV, route, slots and gather kernels take about 12 us a MoE layer and stream almost no
// weights (the router's 3.7 MB); the grouped launches after them then stream the 8 routed experts
// and the shared one, 396 MB. Started at the fork, the shared expert's 44 MB stream during the
// routing instead, and the grouped launches carry 8 experts.
//
// How: an event on the backend's stream that the side stream waits for (the fork), then the shared
// expert as a dense MLP (Backend::mlp: at up to kFp8GemvF16MaxTokens tokens its FP8 linears are the
// GEMV kernels, which never touch cuBLAS or its workspace) with stream_ pointing at the side stream,
// then an event the next moe_experts waits for before its combine, which then adds the routed sum to
// the shared result in out. Under a step graph's recording the fork and join are captured as a
// branch of the graph. The side's kernels and that combine launch plainly (kernels/plain_launches.hpp):
// each has a predecessor on the other stream.
//
// Memory: while a step graph records, no range of its arena is handed out again until the join
// (StepGraphs::hold_releases): a range the side's temporaries give back could otherwise go to the
// routing's next temporary while the side stream still writes it. Eager tensors come from and go
// back to the pool on the legacy stream, which waits for both (blocking) streams: safe, but the
// router's first eager allocation then waits for the whole side MLP, so only step graphs (decode
// steps, dsv3_moe_bench's graph-replayed records) overlap; its _eager records will not.
//
// Behind TROUPE_MOE_SHARED_AHEAD=1 (read at each call) until the H200 has timed it against the
// shared expert riding in the grouped launches (tools/gpu-pending decode_new).
#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_step_graphs.hpp"
#include "backends/cuda/env_switch.hpp"
#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/plain_launches.hpp"

namespace troupe::cuda {

int CudaBackend::ensure_side_stream() {
  if (side_stream_) return cudaSuccess;
  return make_forked_stream(&side_stream_, &side_fork_, &side_done_);
}

bool CudaBackend::moe_shared_ahead(const Tensor& x, const MoeExperts& experts, Tensor out) {
  if (!env_is("TROUPE_MOE_SHARED_AHEAD", "1") || !experts.defined() || !experts.has_shared || !side_stream_ ||
      shared_ahead_pending_ || !x.defined() || x.dim() != 2 || x.device() != Device::cuda ||
      x.size(1) != experts.hidden || x.size(0) < 1 || x.size(0) > kernels::kFp8GemvF16MaxTokens ||
      !out.defined() || out.dtype() != DType::f32 || out.device() != Device::cuda ||
      out.numel() != x.size(0) * experts.hidden || experts.weights.size() != size_t(2 * (experts.num_local + 1)))
    return false;
  // pack_moe_experts' order: gate_up, down of each local expert, then the shared expert's pair.
  const Tensor& gate_up = experts.weights[size_t(2 * experts.num_local)];
  const Tensor& down = experts.weights[size_t(2 * experts.num_local + 1)];
  shared_ahead_pending_ = true;
  side_hold_ = graphs_.hold_releases();
  ++shared_ahead_starts_;
  if (replaying()) {  // the recording's tensors in their order; the graph holds the launches
    mlp(x, gate_up, Tensor(), down, Tensor(), out);
    return true;
  }
  check(cudaEventRecord(side_fork_, stream_), "moe_shared_ahead (fork)");
  check(cudaStreamWaitEvent(side_stream_, side_fork_, 0), "moe_shared_ahead (fork)");
  // The ops below launch on the side stream (cuBLAS keeps the backend's: at these sizes the FP8
  // linears never call it, and cublasSetStream would reset its workspace). An exception out of
  // mlp (std::bad_alloc from an eager allocation) leaves nothing pending: the side's work so far
  // is joined, then it goes on.
  CUstream_st* const main = stream_;
  stream_ = side_stream_;
  try {
    const kernels::PlainLaunches plain;  // the first one's predecessor is on the backend's stream
    mlp(x, gate_up, Tensor(), down, Tensor(), out);
  } catch (...) {
    stream_ = main;
    cudaEventRecord(side_done_, side_stream_);
    join_side_stream();
    throw;
  }
  stream_ = main;
  check(cudaEventRecord(side_done_, side_stream_), "moe_shared_ahead (done)");
  return true;
}

void CudaBackend::moe_shared_join() { join_side_stream(); }

void CudaBackend::join_side_stream() {
  if (!shared_ahead_pending_) return;
  shared_ahead_pending_ = false;
  if (!replaying()) check(cudaStreamWaitEvent(stream_, side_done_, 0), "moe_shared_ahead (join)");
  if (side_hold_) graphs_.end_hold();
  side_hold_ = false;
}

}  // namespace troupe::cuda

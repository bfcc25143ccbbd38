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
// Memory: until the join no arena range is handed out again (hold_arena_releases): a range the
// side's temporaries give back could otherwise go to the routing's next temporary while the side
// stream still writes it. Eager tensors are freed on the legacy stream, which waits for both
// streams (both are blocking streams).
//
// Behind TROUPE_MOE_SHARED_AHEAD=1 (read at each call) until the H200 has timed it against the
// shared expert riding in the grouped launches (tools/gpu-pending decode_new).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_step_graphs.hpp"
#include "backends/cuda/env_switch.hpp"
#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/plain_launches.hpp"

namespace troupe::cuda {

int CudaBackend::ensure_side_stream() {
  if (side_stream_) return cudaSuccess;
  cudaStream_t stream = nullptr;
  cudaEvent_t fork = nullptr, done = nullptr;
  cudaError_t err = cudaStreamCreate(&stream);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  if (err != cudaSuccess) {
    if (done) cudaEventDestroy(done);
    if (fork) cudaEventDestroy(fork);
    if (stream) cudaStreamDestroy(stream);
    return err;
  }
  side_stream_ = stream;
  side_fork_ = fork;
  side_done_ = done;
  return cudaSuccess;
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
  hold_arena_releases();
  if (replaying()) {  // the recording's tensors in their order; the graph holds the launches
    mlp(x, gate_up, Tensor(), down, Tensor(), out);
    return true;
  }
  check(cudaEventRecord(side_fork_, stream_), "moe_shared_ahead (fork)");
  check(cudaStreamWaitEvent(side_stream_, side_fork_, 0), "moe_shared_ahead (fork)");
  // The ops below launch on the side stream; the main one is restored however mlp leaves (it
  // throws std::bad_alloc when an eager allocation fails).
  struct OnSide {
    CudaBackend& b;
    CUstream_st* main;
    ~OnSide() {
      b.stream_ = main;
      cublasSetStream(static_cast<cublasHandle_t>(b.cublas_), main);
    }
  } on_side{*this, stream_};
  stream_ = side_stream_;
  cublasSetStream(static_cast<cublasHandle_t>(cublas_), side_stream_);
  {
    const kernels::PlainLaunches plain;  // the first one's predecessor is on the backend's stream
    mlp(x, gate_up, Tensor(), down, Tensor(), out);
  }
  check(cudaEventRecord(side_done_, side_stream_), "moe_shared_ahead (done)");
  return true;
}

void CudaBackend::moe_shared_join() { join_side_stream(); }

void CudaBackend::join_side_stream() {
  if (!shared_ahead_pending_) return;
  shared_ahead_pending_ = false;
  if (!replaying()) check(cudaStreamWaitEvent(stream_, side_done_, 0), "moe_shared_ahead (join)");
  end_arena_release_hold();
}

}  // namespace troupe::cuda

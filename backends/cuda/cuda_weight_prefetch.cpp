// CudaBackend::prefetch_weight (runtime/backend.hpp): a weight read ahead into L2 on a second
// stream, beside the decode step's kernels that stream little (kernels/l2_prefetch.hpp says where
// HBM idles and for how long).
//
// Only while a step graph records (decode steps replay their recording): the prefetch stream waits
// for the work queued so far (a fork), then takes one small kernel; end_graph joins it back once,
// at the recording's end, so no kernel of the step's chain gains a predecessor on another stream
// (their programmatic launches stay as they were) and the step's end waits for every prefetch.
// Eager work (prefills) never prefetches: a prefill's GEMMs read each weight for many tokens.
// At most three quarters of L2 is asked for, so a prefetch does not evict its own head: a larger
// weight gets only its first rows read ahead, which its GEMV (every row at once, in K order) does
// not read first; the hints name weights of 16.8-33.5 MB, meant to fit. The
// weight's block scales (1/16,384 of it) are left to the GEMV.
//
// Behind TROUPE_L2_PREFETCH=1 (read at each call) until the H200 has timed it.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/env_switch.hpp"
#include "kernels/l2_prefetch.hpp"

namespace troupe::cuda {

void CudaBackend::prefetch_weight(const Tensor& weight) {
  if (!prefetch_stream_ || !graphs_.recording() || !env_is("TROUPE_L2_PREFETCH", "1")) return;
  if (!weight.defined() || weight.device() != Device::cuda || weight.nbytes() < 16) return;
  const size_t bytes = std::min(weight.nbytes(), l2_bytes_ / 4 * 3);
  check(cudaEventRecord(prefetch_fork_, stream_), "prefetch_weight (fork)");
  check(cudaStreamWaitEvent(prefetch_stream_, prefetch_fork_, 0), "prefetch_weight (fork)");
  check(kernels::launch_l2_prefetch(weight.raw(), bytes, num_sms_, prefetch_stream_), "prefetch_weight");
  prefetch_pending_ = true;
  ++prefetches_recorded_;
}

void CudaBackend::join_prefetches() {
  if (!prefetch_pending_) return;
  prefetch_pending_ = false;
  check(cudaEventRecord(prefetch_done_, prefetch_stream_), "prefetch_weight (join)");
  check(cudaStreamWaitEvent(stream_, prefetch_done_, 0), "prefetch_weight (join)");
}

}  // namespace troupe::cuda

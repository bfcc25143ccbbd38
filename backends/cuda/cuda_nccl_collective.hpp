#pragma once
// Collective over NCCL for the GPUs of one process (one rank per GPU, each driven by its own
// thread): ncclCommInitAll builds the communicators; all_reduce_sum is ncclAllReduce on the
// default stream, all_gather ncclAllGather plus one strided copy per rank. abort() calls
// ncclCommAbort (never ncclCommDestroy, which can block forever when a peer is gone), after
// which every call fails. Across processes the unique id would
// travel over CAF (ncclCommInitRank); the multi-GPU issue covers that.
#include <memory>
#include <vector>

#include "runtime/collective.hpp"

namespace troupe::cuda {

// One Collective per device in `devices` (rank r on devices[r]).
Result<std::vector<std::unique_ptr<Collective>>> make_nccl_collectives(const std::vector<int>& devices);

}  // namespace troupe::cuda

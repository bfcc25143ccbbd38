#include "backends/cuda/cuda_nccl_collective.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <mutex>

namespace troupe::cuda {
namespace {

// The group's communicators; aborting one aborts them all (a rank waiting in a collective
// for a dead one would otherwise hang).
struct NcclGroup {
  std::vector<ncclComm_t> comms;
  std::mutex mutex;
  std::atomic<bool> aborted{false};
  std::string reason;

  void abort(const std::string& why) {
    std::lock_guard lock(mutex);
    if (aborted.exchange(true)) return;
    reason = why;
    for (ncclComm_t comm : comms) ncclCommAbort(comm);
  }
  ~NcclGroup() {
    if (!aborted.load())
      for (ncclComm_t comm : comms) ncclCommAbort(comm);  // never ncclCommDestroy: it can block
  }
};

class NcclCollective final : public Collective {
 public:
  NcclCollective(std::shared_ptr<NcclGroup> group, int64_t rank)
      : group_(std::move(group)), rank_(rank) {}
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return int64_t(group_->comms.size()); }

  Status all_reduce_sum(Tensor& t) override {
    if (group_->aborted.load()) return make_error(ErrorCode::unavailable, "NCCL group aborted: " + group_->reason);
    if (t.device() != Device::cuda || t.dtype() != DType::f32)
      return make_error(ErrorCode::invalid_argument, "NCCL all-reduce takes device f32 tensors");
    const ncclResult_t result = ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), ncclFloat, ncclSum,
                                              group_->comms[size_t(rank_)], nullptr);
    if (result != ncclSuccess)
      return make_error(ErrorCode::unavailable, std::string("ncclAllReduce: ") + ncclGetErrorString(result));
    return Status::success();
  }

  void abort(const std::string& why) override { group_->abort(why); }

 private:
  std::shared_ptr<NcclGroup> group_;
  int64_t rank_;
};

}  // namespace

Result<std::vector<std::unique_ptr<Collective>>> make_nccl_collectives(const std::vector<int>& devices) {
  auto group = std::make_shared<NcclGroup>();
  group->comms.resize(devices.size());
  const ncclResult_t result = ncclCommInitAll(group->comms.data(), int(devices.size()), devices.data());
  if (result != ncclSuccess) {
    group->aborted = true;  // nothing to abort
    return make_error(ErrorCode::unavailable, std::string("ncclCommInitAll: ") + ncclGetErrorString(result));
  }
  std::vector<std::unique_ptr<Collective>> ranks;
  for (size_t r = 0; r < devices.size(); ++r) ranks.push_back(std::make_unique<NcclCollective>(group, int64_t(r)));
  return ranks;
}

}  // namespace troupe::cuda

#pragma once
// A test Backend that computes on a CpuBackend but plays a GPU for the NCCL stage hand-off: it
// names a device (device_id) and makes FakeOps link ends that meet through a FakeNcclNetwork by
// their unique id, so a whole pipeline runs --stage-transport nccl on the CPU. Counts
// synchronize() calls (a send must wait for the stage's work).
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/cpu_forwarding_backend.hpp"
#include "tests/unit/fake_nccl_link_ops.hpp"

namespace troupe {

// What the fake GPUs of one test share: the network, and every link end's ops and counters.
struct FakeGpuCluster {
  std::shared_ptr<FakeNcclNetwork> network = std::make_shared<FakeNcclNetwork>();
  std::mutex mutex;
  std::vector<FakeOps*> ops;  // owned by the links; valid while the pipeline lives
  std::vector<std::shared_ptr<FakeCounters>> counters;
  std::atomic<int> num_synchronizes{0};
};

class FakeGpuStageBackend final : public CpuForwardingBackend {
 public:
  FakeGpuStageBackend(std::shared_ptr<FakeGpuCluster> cluster, std::string device_id)
      : cluster_(std::move(cluster)), device_id_(std::move(device_id)) {}

  std::string name() const override { return "fake-gpu cpu"; }

  void synchronize() override { ++cluster_->num_synchronizes; }
  std::string device_id() const override { return device_id_; }
  Result<std::unique_ptr<NcclLinkOps>> make_stage_link_ops() override {
    auto counters = std::make_shared<FakeCounters>();
    auto ops = std::make_unique<FakeOps>(cluster_->network, counters);
    ops->init_polls = 3;
    std::lock_guard lock(cluster_->mutex);
    cluster_->ops.push_back(ops.get());
    cluster_->counters.push_back(counters);
    return std::unique_ptr<NcclLinkOps>(std::move(ops));
  }

 private:
  std::shared_ptr<FakeGpuCluster> cluster_;
  std::string device_id_;
};

}  // namespace troupe

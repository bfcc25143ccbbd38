#pragma once
// A test Backend that computes on a CpuBackend but plays a GPU for the NCCL stage hand-off: it
// names a device (device_id) and makes FakeOps link ends that meet through a FakeNcclNetwork by
// their unique id, so a whole pipeline runs --stage-transport nccl on the CPU. Counts
// synchronize() calls (a send must wait for the stage's work).
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "runtime/backend.hpp"
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

class FakeGpuStageBackend final : public Backend {
 public:
  FakeGpuStageBackend(std::shared_ptr<FakeGpuCluster> cluster, std::string device_id)
      : cluster_(std::move(cluster)), device_id_(std::move(device_id)) {}

  Device device() const override { return cpu_.device(); }
  std::string name() const override { return "fake-gpu cpu"; }
  Tensor empty(DType dtype, std::vector<int64_t> shape) override { return cpu_.empty(dtype, std::move(shape)); }
  Result<Tensor> upload_weight(const Tensor& host) override { return cpu_.upload_weight(host); }
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override { return cpu_.create_kv_cache(spec); }
  AttentionMetadata upload_metadata(AttentionMetadata host) override { return cpu_.upload_metadata(std::move(host)); }
  Tensor to_host(const Tensor& t) override { return cpu_.to_host(t); }
  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override { cpu_.embedding(ids, table, out); }
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor out) override { cpu_.rmsnorm(x, w, eps, out); }
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, float eps, Tensor out) override {
    cpu_.add_rmsnorm(residual, x, w, eps, out);
  }
  void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor out) override { cpu_.linear(x, w, b, out); }
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) override {
    cpu_.rope(q, k, positions, inv_freq);
  }
  void write_kv(Tensor cache, const Tensor& x, const Tensor& slots) override { cpu_.write_kv(cache, x, slots); }
  void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMetadata& meta, float scale,
                       Tensor out) override {
    cpu_.paged_attention(q, k, v, meta, scale, out);
  }
  void silu_and_mul(const Tensor& g, const Tensor& u, Tensor out) override { cpu_.silu_and_mul(g, u, out); }
  void silu_and_mul_packed(const Tensor& gu, Tensor out) override { cpu_.silu_and_mul_packed(gu, out); }
  void copy(const Tensor& src, Tensor dst) override { cpu_.copy(src, dst); }
  void add(const Tensor& a, const Tensor& b, Tensor out) override { cpu_.add(a, b, out); }
  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) override {
    cpu_.gather_rows(x, rows, out);
  }
  std::vector<int32_t> argmax(const Tensor& logits) override { return cpu_.argmax(logits); }

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
  CpuBackend cpu_{1};
  std::shared_ptr<FakeGpuCluster> cluster_;
  std::string device_id_;
};

}  // namespace troupe

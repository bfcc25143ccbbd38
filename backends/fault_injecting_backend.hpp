#pragma once
// A test-only Backend decorator that makes the device fail on cue, so the engine's error boundary
// (engine/llm_engine.hpp) is proven on any backend, the CPU included:
//
//   op:N     the N-th op after arming (embedding, linear, ..., argmax, sample_on_device) fails: it
//            does not run, status() names it, and every later op does nothing (a sticky fault:
//            outputs are left as they were, argmax gives zeros, device sampling declines)
//   alloc:N  the N-th empty() after arming records "out of memory" in status() and throws
//            std::bad_alloc, as CudaBackend does when cudaMalloc fails
//
// Everything else forwards to the wrapped backend (its own fused ops included, counted once).
// Processes take a spec from $TROUPE_INJECT_FAULT (read by backends::make_backend only), armed
// from the start: load and warm-up ops count. Tests wrap a backend and arm() after building.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/backend.hpp"

namespace troupe::backends {

struct FaultSpec {
  enum class Kind { none, op, alloc };
  Kind kind = Kind::none;
  int64_t n = 0;  // >= 1: which call after arming fails
};

// "op:N" | "alloc:N" (N >= 1); "" gives Kind::none. Errors name TROUPE_INJECT_FAULT.
Result<FaultSpec> parse_fault_spec(const std::string& text);

class FaultInjectingBackend final : public Backend {
 public:
  explicit FaultInjectingBackend(std::unique_ptr<Backend> inner, FaultSpec spec = {});

  // Restarts the count for `spec` (thread-safe; a fault already recorded stays).
  void arm(FaultSpec spec);
  Backend& inner() { return *inner_; }

  Status status() const override;
  Device device() const override { return inner_->device(); }
  void bind_thread() override { inner_->bind_thread(); }
  std::string name() const override { return inner_->name(); }

  Tensor empty(DType dtype, std::vector<int64_t> shape) override;
  Result<Tensor> upload_weight(const Tensor& host) override { return inner_->upload_weight(host); }
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override { return inner_->create_kv_cache(spec); }
  AttentionMetadata upload_metadata(AttentionMetadata host) override { return inner_->upload_metadata(std::move(host)); }
  Tensor to_host(const Tensor& t) override { return inner_->to_host(t); }
  void synchronize() override { inner_->synchronize(); }
  std::string device_id() const override { return inner_->device_id(); }
  Result<std::unique_ptr<NcclLinkOps>> make_stage_link_ops() override;
  bool memory_info(size_t* free_bytes, size_t* total_bytes) const override {
    return inner_->memory_info(free_bytes, total_bytes);
  }
  DType matmul_input_dtype() const override { return inner_->matmul_input_dtype(); }
  DType kv_cache_dtype() const override { return inner_->kv_cache_dtype(); }
  Status set_fp8_kv_cache(bool on) override { return inner_->set_fp8_kv_cache(on); }

  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) override;
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) override;
  void write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) override;
  void qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq, const Tensor& slot_mapping,
                         Tensor k_cache, Tensor v_cache, Tensor q_out, const QkNorm& qk_norm) override;
  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionMetadata& meta,
                       float scale, Tensor out) override;
  void silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void silu_and_mul_packed(const Tensor& gate_up, Tensor out) override;
  void linear_pair(const Tensor& x, const Tensor& weight_a, const Tensor& weight_b, Tensor out_a,
                   Tensor out_b) override;
  void mlp(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias, const Tensor& down_weight,
           const Tensor& down_bias, Tensor out) override;
  void copy(const Tensor& src, Tensor dst) override;
  void add(const Tensor& a, const Tensor& b, Tensor out) override;
  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) override;
  void lm_head(const Tensor& hidden, const Tensor& weight, Tensor logits) override;
  std::vector<int32_t> argmax(const Tensor& logits) override;
  bool sample_on_device(const Tensor& logits, const std::vector<DeviceSampleRow>& rows,
                        std::vector<int32_t>* ids) override;

  bool supports_graphs() const override { return inner_->supports_graphs(); }
  Result<GraphPhase> begin_graph(int64_t key) override;
  void drop_graphs() override { inner_->drop_graphs(); }
  Status end_graph(bool launch) override { return inner_->end_graph(launch); }

 private:
  // False when the op must not run: it is the one that fails, or the device failed before.
  bool admit(const char* op);
  void record(const std::string& what);

  std::unique_ptr<Backend> inner_;
  std::atomic<int> kind_{0};  // FaultSpec::Kind
  std::atomic<int64_t> target_{0};
  std::atomic<int64_t> num_calls_{0};  // ops or allocations since arm()
  std::atomic<bool> failed_{false};
  mutable std::mutex mutex_;
  std::string fault_;  // under mutex_
};

}  // namespace troupe::backends

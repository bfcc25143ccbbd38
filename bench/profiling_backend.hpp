#pragma once
// A Backend decorator for profiling a step (gpu_decode_bench only): every op is forwarded to the
// inner backend; while recording, each call is bracketed by a pair of CUDA events on the legacy
// default stream (ordered with the CUDA backend's blocking stream) and keyed by op name, linear products by weight shape
// ("linear 6144x4096"). Host time inside the calls and between them (the model's own work) is
// kept too. Not recording, it is a plain pass-through.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/moe_experts.hpp"

namespace troupe::bench {

struct OpProfile {
  std::string name;     // "rmsnorm", "linear 6144x4096", ...
  int64_t calls = 0;
  double gpu_ms = 0;    // CUDA-event intervals, summed
  double host_ms = 0;   // host time inside the calls (launches, allocation, synchronous copies)
  double weight_bytes = 0;  // bytes of the weights the calls read (linear, lm_head, mlp; FP8 with scales)
};

// Also a MoeExpertsBackend when the wrapped backend is one (the grouped MoE path stays on).
class ProfilingBackend final : public Backend, public MoeExpertsBackend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}
  ~ProfilingBackend() override;

  Backend& inner() { return inner_; }
  // Starts recording; clears the previous recording.
  void start();
  // Stops recording, waits for the GPU and sums the intervals per op (in first-call order).
  std::vector<OpProfile> stop();
  // Host time from start() to the first call and between consecutive calls of the last recording.
  double host_gap_ms() const { return host_gap_ms_; }

  Device device() const override { return inner_.device(); }
  void bind_thread() override { inner_.bind_thread(); }
  std::string name() const override { return "profiling(" + inner_.name() + ")"; }
  DType matmul_input_dtype() const override { return inner_.matmul_input_dtype(); }
  bool memory_info(size_t* free_bytes, size_t* total_bytes) const override {
    return inner_.memory_info(free_bytes, total_bytes);
  }

  // Step graphs pass through (record a step eagerly to profile it: events can't join a graph).
  DType kv_cache_dtype() const override { return inner_.kv_cache_dtype(); }
  Status set_fp8_kv_cache(bool on) override { return inner_.set_fp8_kv_cache(on); }
  bool supports_graphs() const override { return inner_.supports_graphs(); }
  Result<GraphPhase> begin_graph(int64_t key) override { return inner_.begin_graph(key); }
  Status end_graph(bool launch) override { return inner_.end_graph(launch); }
  void drop_graphs() override { inner_.drop_graphs(); }

  Tensor empty(DType dtype, std::vector<int64_t> shape) override;
  Result<Tensor> upload_weight(const Tensor& host) override;
  bool keeps_fp8_weights() const override { return inner_.keeps_fp8_weights(); }
  void prefer_fp8_decode(bool on) override { inner_.prefer_fp8_decode(on); }
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override;
  AttentionMetadata upload_metadata(AttentionMetadata host) override;
  Tensor to_host(const Tensor& t) override;

  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) override;
  void rmsnorm_linear(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                      Tensor out) override;
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) override;
  void write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) override;
  void qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                         const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                         const QkNorm& qk_norm) override;
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
  bool supports_mla_moe() const override { return inner_.supports_mla_moe(); }
  void rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) override;
  void mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                        const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) override;
  void mla_rope_and_write_latent(Tensor q, const Tensor& kv_a, const Tensor& norm_weight, float eps,
                                 const Tensor& positions, const Tensor& inv_freq, float scale,
                                 const Tensor& slot_mapping, Tensor cache) override;
  void mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                           const AttentionMetadata& meta, float scale, Tensor out) override;
  void add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& weights,
                       Tensor out) override;
  bool moe_route(const Tensor& logits, const Tensor& bias, const MoeRouteParams& params, Tensor topk_ids,
                 Tensor topk_weights) override;
  std::vector<int32_t> argmax(const Tensor& logits) override;
  Result<MoeExperts> pack_moe_experts(const std::vector<Tensor>& gate_up, const std::vector<Tensor>& down,
                                      const Tensor& shared_gate_up, const Tensor& shared_down) override;
  // Timed as "moe_experts"; while recording, the ids come to the host to count the experts read.
  bool moe_experts(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights, const MoeExperts& experts,
                   int64_t expert_begin, int64_t num_experts, Tensor out) override;
  // Passed through untimed: the work overlaps what follows; moe_experts' time includes the join.
  bool moe_shared_ahead(const Tensor& x, const MoeExperts& experts, Tensor out) override;
  void moe_shared_join() override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Call {
    size_t op;           // index into names_
    size_t begin_event;  // index into events_; the end event is begin_event + 1
    double host_ms;
    double weight_bytes;
  };
  // Runs `fn` as op `name`, bracketed by events while recording.
  template <class Fn>
  decltype(auto) record(const std::string& name, Fn&& fn);
  size_t op_index(const std::string& name);
  // The bytes of `weight` (with its FP8 block scale), counted for the next recorded call.
  void reads(const Tensor& weight);

  Backend& inner_;
  bool recording_ = false;
  std::vector<void*> events_;  // cudaEvent_t, reused across recordings
  size_t next_event_ = 0;
  std::vector<std::string> names_;
  std::vector<Call> calls_;
  Clock::time_point last_return_;
  double host_gap_ms_ = 0;
  double pending_bytes_ = 0;
};

}  // namespace troupe::bench

#include "bench/profiling_backend.hpp"

#include <cuda_runtime_api.h>

#include <utility>

namespace troupe::bench {
namespace {

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

cudaEvent_t event(void* e) { return static_cast<cudaEvent_t>(e); }

}  // namespace

ProfilingBackend::~ProfilingBackend() {
  for (void* e : events_) cudaEventDestroy(event(e));
}

void ProfilingBackend::start() {
  recording_ = true;
  next_event_ = 0;
  calls_.clear();
  names_.clear();
  host_gap_ms_ = 0;
  last_return_ = Clock::now();
}

std::vector<OpProfile> ProfilingBackend::stop() {
  recording_ = false;
  if (inner_.device() == Device::cuda) cudaDeviceSynchronize();
  std::vector<OpProfile> ops(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) ops[i].name = names_[i];
  for (const Call& c : calls_) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, event(events_[c.begin_event]), event(events_[c.begin_event + 1])) != cudaSuccess) ms = 0;
    OpProfile& op = ops[c.op];
    op.calls += 1;
    op.gpu_ms += double(ms);
    op.host_ms += c.host_ms;
    op.weight_bytes += c.weight_bytes;
  }
  cudaGetLastError();  // an unusable event pair counts as 0 ms, not as a backend error
  return ops;
}

size_t ProfilingBackend::op_index(const std::string& name) {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return i;
  names_.push_back(name);
  return names_.size() - 1;
}

void ProfilingBackend::reads(const Tensor& weight) {
  if (!recording_ || !weight.defined()) return;
  pending_bytes_ += double(weight.nbytes());
  if (weight.has_block_scale()) pending_bytes_ += double(weight.block_scale().nbytes());
}

template <class Fn>
decltype(auto) ProfilingBackend::record(const std::string& name, Fn&& fn) {
  if (!recording_) return fn();
  const Clock::time_point enter = Clock::now();
  host_gap_ms_ += ms_between(last_return_, enter);
  while (events_.size() < next_event_ + 2) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) cudaGetLastError();
    events_.push_back(e);
  }
  const size_t begin = next_event_;
  next_event_ += 2;
  if (cudaEventRecord(event(events_[begin]), nullptr) != cudaSuccess) cudaGetLastError();  // keep it from the ops
  // Records the end event and the call once `fn` has returned (whatever it returns).
  struct Finish {
    ProfilingBackend& self;
    size_t op, begin;
    Clock::time_point enter;
    double bytes;
    ~Finish() {
      if (cudaEventRecord(event(self.events_[begin + 1]), nullptr) != cudaSuccess) cudaGetLastError();
      self.last_return_ = Clock::now();
      self.calls_.push_back({op, begin, ms_between(enter, self.last_return_), bytes});
    }
  } finish{*this, op_index(name), begin, enter, pending_bytes_};
  pending_bytes_ = 0;
  return fn();
}

Tensor ProfilingBackend::empty(DType dtype, std::vector<int64_t> shape) {
  return record("empty", [&] { return inner_.empty(dtype, std::move(shape)); });
}

Result<Tensor> ProfilingBackend::upload_weight(const Tensor& host) {
  return record("upload_weight", [&] { return inner_.upload_weight(host); });
}

Result<KvCache> ProfilingBackend::create_kv_cache(const KvCacheSpec& spec) {
  return record("create_kv_cache", [&] { return inner_.create_kv_cache(spec); });
}

AttentionMetadata ProfilingBackend::upload_metadata(AttentionMetadata host) {
  return record("upload_metadata", [&] { return inner_.upload_metadata(std::move(host)); });
}

Tensor ProfilingBackend::to_host(const Tensor& t) {
  return record("to_host", [&] { return inner_.to_host(t); });
}

void ProfilingBackend::embedding(const Tensor& ids, const Tensor& table, Tensor out) {
  record("embedding", [&] { inner_.embedding(ids, table, out); });
}

void ProfilingBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  record("rmsnorm", [&] { inner_.rmsnorm(x, weight, eps, out); });
}

void ProfilingBackend::add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  record("add_rmsnorm", [&] { inner_.add_rmsnorm(residual, x, weight, eps, out); });
}

void ProfilingBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) {
  if (!recording_) return inner_.linear(x, weight, bias, out);
  const std::string name = "linear " + std::to_string(weight.size(0)) + "x" + std::to_string(weight.size(1)) +
                           (weight.dtype() == DType::f8_e4m3 ? " fp8" : "");
  reads(weight);
  record(name, [&] { inner_.linear(x, weight, bias, out); });
}

void ProfilingBackend::rmsnorm_linear(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                                      Tensor out) {
  if (!recording_) return inner_.rmsnorm_linear(x, norm_weight, eps, weight, out);
  const std::string name = "rmsnorm_linear " + std::to_string(weight.size(0)) + "x" + std::to_string(weight.size(1)) +
                           (weight.dtype() == DType::f8_e4m3 ? " fp8" : "");
  reads(weight);
  record(name, [&] { inner_.rmsnorm_linear(x, norm_weight, eps, weight, out); });
}

void ProfilingBackend::rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) {
  record("rope", [&] { inner_.rope(q, k, positions, inv_freq); });
}

void ProfilingBackend::write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) {
  record("write_kv", [&] { inner_.write_kv(cache_component, x, slot_mapping); });
}

void ProfilingBackend::qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                         const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                                         const QkNorm& qk_norm) {
  record("qkv_rope_write_kv",
         [&] { inner_.qkv_rope_write_kv(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, qk_norm); });
}

void ProfilingBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                       const AttentionMetadata& meta, float scale, Tensor out) {
  record("paged_attention", [&] { inner_.paged_attention(q, k_cache, v_cache, meta, scale, out); });
}

void ProfilingBackend::silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  record("silu_and_mul", [&] { inner_.silu_and_mul(gate, up, out); });
}

void ProfilingBackend::silu_and_mul_packed(const Tensor& gate_up, Tensor out) {
  record("silu_and_mul", [&] { inner_.silu_and_mul_packed(gate_up, out); });
}

// Both products as one op ("linear_pair AxK+BxK"): the backend may run them in one launch.
void ProfilingBackend::linear_pair(const Tensor& x, const Tensor& weight_a, const Tensor& weight_b, Tensor out_a,
                                   Tensor out_b) {
  if (!recording_) return inner_.linear_pair(x, weight_a, weight_b, out_a, out_b);
  const std::string name = "linear_pair " + std::to_string(weight_a.size(0)) + "+" + std::to_string(weight_b.size(0)) +
                           "x" + std::to_string(weight_a.size(1)) + (weight_a.dtype() == DType::f8_e4m3 ? " fp8" : "");
  reads(weight_a);
  reads(weight_b);
  record(name, [&] { inner_.linear_pair(x, weight_a, weight_b, out_a, out_b); });
}

// The whole MLP as one op ("mlp"): the backend may fuse its products and activation.
void ProfilingBackend::mlp(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias,
                           const Tensor& down_weight, const Tensor& down_bias, Tensor out) {
  reads(gate_up_weight);
  reads(down_weight);
  record("mlp", [&] { inner_.mlp(x, gate_up_weight, gate_up_bias, down_weight, down_bias, out); });
}

void ProfilingBackend::copy(const Tensor& src, Tensor dst) {
  record("copy", [&] { inner_.copy(src, dst); });
}

void ProfilingBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  record("add", [&] { inner_.add(a, b, out); });
}

void ProfilingBackend::gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) {
  record("gather_rows", [&] { inner_.gather_rows(x, rows, out); });
}

void ProfilingBackend::lm_head(const Tensor& hidden, const Tensor& weight, Tensor logits) {
  reads(weight);
  record("lm_head", [&] { inner_.lm_head(hidden, weight, logits); });
}

void ProfilingBackend::rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) {
  record("rope_interleaved", [&] { inner_.rope_interleaved(x, positions, inv_freq, scale); });
}

void ProfilingBackend::mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps,
                                        const Tensor& positions, const Tensor& inv_freq, float scale,
                                        const Tensor& slot_mapping, Tensor cache) {
  record("mla_write_latent",
         [&] { inner_.mla_write_latent(kv_a, norm_weight, eps, positions, inv_freq, scale, slot_mapping, cache); });
}

void ProfilingBackend::mla_rope_and_write_latent(Tensor q, const Tensor& kv_a, const Tensor& norm_weight, float eps,
                                                 const Tensor& positions, const Tensor& inv_freq, float scale,
                                                 const Tensor& slot_mapping, Tensor cache) {
  record("mla_rope_and_write_latent", [&] {
    inner_.mla_rope_and_write_latent(q, kv_a, norm_weight, eps, positions, inv_freq, scale, slot_mapping, cache);
  });
}

void ProfilingBackend::mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                           const AttentionMetadata& meta, float scale, Tensor out) {
  reads(kv_b_weight);
  record("mla_paged_attention", [&] { inner_.mla_paged_attention(q, cache, kv_b_weight, meta, scale, out); });
}

void ProfilingBackend::add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows,
                                       const std::vector<float>& weights, Tensor out) {
  record("add_rows_scaled", [&] { inner_.add_rows_scaled(x, rows, weights, out); });
}

bool ProfilingBackend::moe_route(const Tensor& logits, const Tensor& bias, const MoeRouteParams& params,
                                 Tensor topk_ids, Tensor topk_weights) {
  return record("moe_route", [&] { return inner_.moe_route(logits, bias, params, topk_ids, topk_weights); });
}

Result<MoeExperts> ProfilingBackend::pack_moe_experts(const std::vector<Tensor>& gate_up,
                                                      const std::vector<Tensor>& down, const Tensor& shared_gate_up,
                                                      const Tensor& shared_down) {
  auto* grouped = dynamic_cast<MoeExpertsBackend*>(&inner_);
  if (!grouped) return make_error(ErrorCode::unsupported, "the profiled backend has no grouped MoE experts");
  return grouped->pack_moe_experts(gate_up, down, shared_gate_up, shared_down);
}

bool ProfilingBackend::moe_experts(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                                   const MoeExperts& experts, int64_t expert_begin, int64_t num_experts, Tensor out) {
  auto* grouped = dynamic_cast<MoeExpertsBackend*>(&inner_);
  if (!grouped) return false;
  if (recording_) {
    // The weights read: every local expert some token chose (weights holds gate_up, down per
    // local expert, then the shared expert's pair).
    const Tensor ids = inner_.to_host(topk_ids);
    std::vector<bool> touched(size_t(experts.num_local), false);
    for (int64_t i = 0; i < ids.numel(); ++i) {
      const int64_t local = int64_t(ids.data<int32_t>()[i]) - expert_begin;
      if (local >= 0 && local < experts.num_local) touched[size_t(local)] = true;
    }
    for (int64_t e = 0; e < experts.num_local; ++e)
      if (touched[size_t(e)] && size_t(2 * e + 1) < experts.weights.size()) {
        reads(experts.weights[size_t(2 * e)]);
        reads(experts.weights[size_t(2 * e + 1)]);
      }
    for (size_t w = size_t(2 * experts.num_local); w < experts.weights.size(); ++w) reads(experts.weights[w]);
  }
  return record("moe_experts",
                [&] { return grouped->moe_experts(x, topk_ids, topk_weights, experts, expert_begin, num_experts, out); });
}

bool ProfilingBackend::moe_shared_ahead(const Tensor& x, const MoeExperts& experts, Tensor out) {
  auto* grouped = dynamic_cast<MoeExpertsBackend*>(&inner_);
  return grouped && grouped->moe_shared_ahead(x, experts, out);
}

void ProfilingBackend::moe_shared_join() {
  if (auto* grouped = dynamic_cast<MoeExpertsBackend*>(&inner_)) grouped->moe_shared_join();
}

std::vector<int32_t> ProfilingBackend::argmax(const Tensor& logits) {
  return record("argmax", [&] { return inner_.argmax(logits); });
}

}  // namespace troupe::bench

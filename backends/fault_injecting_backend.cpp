#include "backends/fault_injecting_backend.hpp"

#include <cstdlib>
#include <new>

#include "runtime/logging.hpp"
#include "runtime/nccl_stage_link.hpp"

namespace troupe::backends {

Result<FaultSpec> parse_fault_spec(const std::string& text) {
  FaultSpec spec;
  if (text.empty()) return spec;
  const size_t colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  char* end = nullptr;
  const std::string count = colon == std::string::npos ? "" : text.substr(colon + 1);
  spec.n = std::strtoll(count.c_str(), &end, 10);
  if ((kind != "op" && kind != "alloc") || count.empty() || *end != '\0' || spec.n < 1)
    return make_error(ErrorCode::invalid_argument,
                      "TROUPE_INJECT_FAULT: expected op:N or alloc:N with N >= 1, got '" + text + "'");
  spec.kind = kind == "op" ? FaultSpec::Kind::op : FaultSpec::Kind::alloc;
  return spec;
}

FaultInjectingBackend::FaultInjectingBackend(std::unique_ptr<Backend> inner, FaultSpec spec) : inner_(std::move(inner)) {
  arm(spec);
}

void FaultInjectingBackend::arm(FaultSpec spec) {
  num_calls_ = 0;
  target_ = spec.n;
  kind_ = int(spec.kind);
}

Status FaultInjectingBackend::status() const {
  {
    std::lock_guard lock(mutex_);
    if (!fault_.empty()) return make_error(ErrorCode::internal, fault_);
  }
  return inner_->status();
}

void FaultInjectingBackend::record(const std::string& what) {
  log::get("engine")->error("injected fault: {}", what);
  std::lock_guard lock(mutex_);
  if (fault_.empty()) fault_ = what;
}

bool FaultInjectingBackend::admit(const char* op) {
  if (failed_) return false;
  if (kind_ != int(FaultSpec::Kind::op) || ++num_calls_ != target_) return true;
  failed_ = true;
  record(std::string(op) + " failed: injected device fault (op " + std::to_string(target_.load()) + ")");
  return false;
}

Tensor FaultInjectingBackend::empty(DType dtype, std::vector<int64_t> shape) {
  if (kind_ == int(FaultSpec::Kind::alloc) && ++num_calls_ == target_) {
    record("device allocation failed: injected out of memory (allocation " + std::to_string(target_.load()) + ")");
    throw std::bad_alloc();
  }
  return inner_->empty(dtype, std::move(shape));
}

void FaultInjectingBackend::embedding(const Tensor& ids, const Tensor& table, Tensor out) {
  if (admit("embedding")) inner_->embedding(ids, table, out);
}
void FaultInjectingBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  if (admit("rmsnorm")) inner_->rmsnorm(x, weight, eps, out);
}
void FaultInjectingBackend::add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  if (admit("add_rmsnorm")) inner_->add_rmsnorm(residual, x, weight, eps, out);
}
void FaultInjectingBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) {
  if (admit("linear")) inner_->linear(x, weight, bias, out);
}
void FaultInjectingBackend::rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) {
  if (admit("rope")) inner_->rope(q, k, positions, inv_freq);
}
void FaultInjectingBackend::write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) {
  if (admit("write_kv")) inner_->write_kv(cache_component, x, slot_mapping);
}
void FaultInjectingBackend::qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                              const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache,
                                              Tensor q_out, const QkNorm& qk_norm) {
  if (admit("qkv_rope_write_kv"))
    inner_->qkv_rope_write_kv(qkv, positions, inv_freq, slot_mapping, k_cache, v_cache, q_out, qk_norm);
}
void FaultInjectingBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                            const AttentionMetadata& meta, float scale, Tensor out) {
  if (admit("paged_attention")) inner_->paged_attention(q, k_cache, v_cache, meta, scale, out);
}
void FaultInjectingBackend::silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  if (admit("silu_and_mul")) inner_->silu_and_mul(gate, up, out);
}
void FaultInjectingBackend::silu_and_mul_packed(const Tensor& gate_up, Tensor out) {
  if (admit("silu_and_mul_packed")) inner_->silu_and_mul_packed(gate_up, out);
}
void FaultInjectingBackend::linear_pair(const Tensor& x, const Tensor& weight_a, const Tensor& weight_b,
                                        Tensor out_a, Tensor out_b) {
  if (admit("linear_pair")) inner_->linear_pair(x, weight_a, weight_b, out_a, out_b);
}
void FaultInjectingBackend::mlp(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias,
                                const Tensor& down_weight, const Tensor& down_bias, Tensor out) {
  if (admit("mlp")) inner_->mlp(x, gate_up_weight, gate_up_bias, down_weight, down_bias, out);
}
void FaultInjectingBackend::copy(const Tensor& src, Tensor dst) {
  if (admit("copy")) inner_->copy(src, dst);
}
void FaultInjectingBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  if (admit("add")) inner_->add(a, b, out);
}
void FaultInjectingBackend::gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) {
  if (admit("gather_rows")) inner_->gather_rows(x, rows, out);
}
void FaultInjectingBackend::lm_head(const Tensor& hidden, const Tensor& weight, Tensor logits) {
  if (admit("lm_head")) inner_->lm_head(hidden, weight, logits);
}
std::vector<int32_t> FaultInjectingBackend::argmax(const Tensor& logits) {
  if (admit("argmax")) return inner_->argmax(logits);
  return std::vector<int32_t>(size_t(logits.size(0)), 0);
}
bool FaultInjectingBackend::sample_on_device(const Tensor& logits, const std::vector<DeviceSampleRow>& rows,
                                             std::vector<int32_t>* ids) {
  return admit("sample_on_device") && inner_->sample_on_device(logits, rows, ids);
}

Result<GraphPhase> FaultInjectingBackend::begin_graph(int64_t key) {
  if (failed_) return make_error(ErrorCode::unavailable, "step graph: the device failed");
  return inner_->begin_graph(key);
}

Result<std::unique_ptr<NcclLinkOps>> FaultInjectingBackend::make_stage_link_ops() {
  return inner_->make_stage_link_ops();
}

}  // namespace troupe::backends

#pragma once
// A test Backend base that forwards the ops every model needs to a CpuBackend it owns: the fakes
// that play another device (a GPU claiming step graphs, a GPU with NCCL stage links) derive from it
// and override only what they play.
#include <string>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "runtime/backend.hpp"

namespace troupe {

class CpuForwardingBackend : public Backend {
 public:
  Device device() const override { return cpu_.device(); }
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

 protected:
  CpuBackend cpu_{1};
};

}  // namespace troupe

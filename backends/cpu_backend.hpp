#pragma once
// The CPU backend: fp32 compute and accumulation, OpenBLAS sgemm for linear layers, a small thread
// pool for the other ops. OpenBLAS is given the same number of threads; the two never run at once.
#include <memory>

#include "runtime/backend.hpp"
#include "runtime/thread_pool.hpp"

namespace troupe {

class CpuBackend final : public Backend {
 public:
  // num_threads <= 0: all hardware threads (Config::num_threads). keep_bf16_weights: bf16 matrices
  // stay bf16 in memory (half the size) and are widened to fp32 block by block inside linear and
  // embedding; everything else is fp32.
  explicit CpuBackend(int64_t num_threads = 0, bool keep_bf16_weights = false);

  Device device() const override { return Device::cpu; }
  std::string name() const override { return "cpu"; }
  int64_t num_threads() const { return pool_.num_threads(); }

  Tensor empty(DType dtype, std::vector<int64_t> shape) override;
  Result<Tensor> upload_weight(const Tensor& host) override;
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override;
  // fp32, or f8_e4m3 with --kv-cache-dtype fp8 (written and read as kernels/kv_write.hpp's and
  // paged_attention.hpp's references say).
  DType kv_cache_dtype() const override { return fp8_kv_cache_ ? DType::f8_e4m3 : DType::f32; }
  Status set_fp8_kv_cache(bool on) override {
    fp8_kv_cache_ = on;
    return Status::success();
  }
  Tensor to_host(const Tensor& t) override { return t; }

  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) override;
  // Dequantizes 128 weight rows at a time into fp32, then one sgemm per block (cpu_fp8_ops.cpp).
  void linear_fp8_block(const Tensor& x, const Tensor& weight_fp8, const Tensor& scale_inv, Tensor out) override;
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) override;
  void write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) override;
  // kernels/qkv_rope.hpp's reference over each thread's tokens (fp32 or f8_e4m3 caches).
  void qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                         const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                         const QkNorm& qk_norm) override;
  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionMetadata& meta,
                       float scale, Tensor out) override;
  bool supports_mla_moe() const override { return true; }
  void rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) override;
  void mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                        const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) override;
  void mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                           const AttentionMetadata& meta, float scale, Tensor out) override;
  void add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& weights,
                       Tensor out) override;
  void silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void silu_and_mul_packed(const Tensor& gate_up, Tensor out) override;
  void copy(const Tensor& src, Tensor dst) override;
  void add(const Tensor& a, const Tensor& b, Tensor out) override;
  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) override;
  std::vector<int32_t> argmax(const Tensor& logits) override;

 private:
  ThreadPool pool_;
  bool keep_bf16_weights_ = false;
  bool fp8_kv_cache_ = false;
};

}  // namespace troupe

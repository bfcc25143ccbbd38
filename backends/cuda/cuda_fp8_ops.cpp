// CudaBackend's FP8 block-scaled linear layers (contracts in runtime/backend.hpp): the weights stay
// e4m3 in HBM with their fp32 block scales; products run in kernels/fp8_block_gemm.hpp.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/env_switch.hpp"
#include "runtime/fp8_block.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/moe_grouped_gemm.hpp"
#include "kernels/moe_segment_quant.hpp"
#include "kernels/smem_carveout.hpp"

namespace troupe::cuda {
using namespace kernels;

void CudaBackend::prefer_fp8_decode(bool on) { set_dependent_smem_carveout(on ? kFp8DecodeSmemCarveout : -1); }

Result<Tensor> CudaBackend::upload_fp8_weight(const Tensor& host_fp8) {
  if (host_fp8.dtype() != DType::f8_e4m3 && host_fp8.dtype() != DType::f32)
    return make_error(ErrorCode::unsupported, std::string("FP8 weights are F8_E4M3 bytes and F32 scales, not ") +
                                                  std::string(dtype_name(host_fp8.dtype())));
  const Tensor source = host_fp8.device() == Device::cuda ? to_host(host_fp8) : host_fp8;
  try {
    Tensor d = device_tensor(source.dtype(), source.shape());
    if (pinned_upload_.copy(d.raw(), source.raw(), d.nbytes()) != cudaSuccess)
      return make_error(ErrorCode::out_of_resources, "uploading an FP8 weight to the GPU failed");
    return d;
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::out_of_resources, "uploading an FP8 weight to the GPU: " + fault_);
  }
}

Result<Tensor> CudaBackend::upload_block_fp8_weight(const Tensor& host) {
  if (!keeps_fp8_weights()) {
    // fp32 compute (exact against the CPU): the weight dequantized, as the CPU backend holds it.
    auto wide = dequantize_fp8_block(host, "weight");
    if (!wide.ok()) return wide.error();
    return upload_weight(wide.value());
  }
  auto weight = upload_fp8_weight(host);
  if (!weight.ok()) return weight.error();
  auto scale = upload_fp8_weight(host.block_scale());
  if (!scale.ok()) return scale.error();
  weight->set_block_scale(std::move(scale.value()));
  return weight;
}

void CudaBackend::linear_fp8_weight(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) {
  if (!weight.has_block_scale()) {
    record_fault("linear: an F8_E4M3 weight without its block scale");
    return;
  }
  if (bias.defined()) {
    record_fault("linear: FP8 block weights take no bias");
    return;
  }
  linear_fp8_block(x, weight, weight.block_scale(), out);
}

// An FP8 block weight at decode sizes whose GEMV is the f16 tensor-core one takes the norm in its
// staging (kernels/fp8_gemv_f16.hpp's launch_fp8_gemv_f16_rmsnorm): one launch, no normed copy.
// TROUPE_FP8_NORM_FUSED=0 keeps rmsnorm then linear (the A/B switch, read at each call).
void CudaBackend::rmsnorm_linear(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                                 Tensor out) {
  const int64_t in = x.dim() == 2 ? x.size(1) : 0, n = x.dim() == 2 ? x.size(0) : 0;
  const bool fused = weight.dtype() == DType::f8_e4m3 && weight.has_block_scale() && x.dtype() == DType::f32 &&
                     x.device() == Device::cuda && out.dtype() == DType::f32 && out.device() == Device::cuda &&
                     norm_weight.dtype() == DType::f32 && norm_weight.device() == Device::cuda &&
                     norm_weight.numel() == in && weight.dim() == 2 &&
                     weight.size(1) == in && n >= 1 &&
                     fp8_gemv_runs_f16(n, weight.size(0), in, x.raw(), weight.raw()) &&
                     fp8_gemv_f16_rmsnorm_supported(n, weight.size(0), in, x.raw(), weight.raw()) &&
                     !env_is("TROUPE_FP8_NORM_FUSED", "0");
  if (!fused) {
    Backend::rmsnorm_linear(x, norm_weight, eps, weight, out);
    return;
  }
  if (replaying()) return;
  check(launch_fp8_gemv_f16_rmsnorm(x.data<float>(), norm_weight.data<float>(), eps, weight.data<uint8_t>(),
                                    weight.block_scale().data<float>(), out.data<float>(), n, weight.size(0), in,
                                    stream()),
        "fp8_gemv_f16_rmsnorm");
}

namespace {
// The first decode size that takes cuBLASLt (kernels/fp8_block_gemm.hpp's kFp8LtMinTokens) unless
// TROUPE_FP8_LT_MIN_TOKENS says otherwise, a diagnostic for A/B runs (65: never); read at each
// call.
int64_t lt_min_tokens() {
  const char* env = std::getenv("TROUPE_FP8_LT_MIN_TOKENS");
  return env && std::atoll(env) > 0 ? std::atoll(env) : kFp8LtMinTokens;
}
}  // namespace

void CudaBackend::linear_fp8_block(const Tensor& x, const Tensor& weight_fp8, const Tensor& scale_inv, Tensor out) {
  Tensor dx = on_device(x);
  if (replaying()) return;
  const int64_t out_features = weight_fp8.size(0), in = weight_fp8.size(1), n = dx.numel() / in;
  if (n == 0) return;
  auto gemv = [&] {
    const size_t work_bytes = fp8_block_gemv_workspace_bytes(n, out_features, in);
    Tensor work = scratch(DType::u8, {int64_t(work_bytes)});
    const uint8_t* w = weight_fp8.data<uint8_t>();
    const float* w_scale = scale_inv.data<float>();
    float* o = out.data<float>();
    const cudaError_t err =
        dx.dtype() == DType::bf16
            ? launch_fp8_block_gemv(dx.data<uint16_t>(), w, w_scale, o, n, out_features, in, work.raw(), work_bytes,
                                    stream())
            : launch_fp8_block_gemv(dx.data<float>(), w, w_scale, o, n, out_features, in, work.raw(), work_bytes,
                                    stream());
    check(err, "fp8_block_gemv");
  };
  if (!fp8_linear_quantizes_x(n, out_features, in, lt_min_tokens())) return gemv();
  const Fp8Rows q = quantize_fp8_rows(dx, n, in);
  // cuBLASLt refused a decode size: the decode kernel reads x as it is.
  if (!fp8_block_from_quantized(q, n, weight_fp8, scale_inv, out, n <= kFp8GemvMaxTokens)) gemv();
}

CudaBackend::Fp8Rows CudaBackend::quantize_fp8_rows(const Tensor& dx, int64_t n, int64_t in) {
  Fp8Rows q{scratch(DType::f8_e4m3, {n, in}), scratch(DType::f32, {fp8_num_blocks(in), n})};  // xs: [ceil(in / 128), n]
  const cudaError_t qerr =
      dx.dtype() == DType::bf16
          ? launch_fp8_quant_bf16(dx.data<uint16_t>(), q.x.data<uint8_t>(), q.scale.data<float>(), n, in, stream())
          : launch_fp8_quant_f32(dx.data<float>(), q.x.data<uint8_t>(), q.scale.data<float>(), n, in, stream());
  check(qerr, "fp8_quant");
  return q;
}

bool CudaBackend::fp8_block_from_quantized(const Fp8Rows& q, int64_t n, const Tensor& weight_fp8,
                                           const Tensor& scale_inv, Tensor out, bool gemv_if_refused) {
  const int64_t out_features = weight_fp8.size(0), in = weight_fp8.size(1);
  const uint8_t* w = weight_fp8.data<uint8_t>();
  const float* w_scale = scale_inv.data<float>();
  const uint8_t* xq = q.x.data<uint8_t>();
  const float* xs = q.scale.data<float>();
  float* o = out.data<float>();
  // cuBLASLt's block-scaled GEMM (5x the own mma.sync kernel on the H200: bench/dsv3_fp8_gemm_bench)
  // writes bf16 only; widened to the fp32 out. Where it refuses the sizes, the own kernel (fp32 out).
  {
    Tensor y = scratch(DType::bf16, {n, out_features});
    const cudaError_t lt =
        launch_fp8_block_gemm_cublaslt(cublas_, xq, xs, w, w_scale, y.data<uint16_t>(), n, out_features, in,
                                       cublas_workspace_, cublas_workspace_ ? kCublasWorkspaceBytes : 0, stream());
    if (lt == cudaSuccess) {
      check(launch_bf16_to_f32(y.data<uint16_t>(), o, n * out_features, stream()), "bf16_to_f32");
      return true;
    }
    if (lt != cudaErrorNotSupported) {
      check(lt, "fp8_block_gemm_cublaslt");
      return true;
    }
    if (gemv_if_refused) return false;
  }
  // Then Hopper's grouped wgmma GEMM with the layer as its one expert (R1's kv_a, n = 576, 4,096
  // tokens: 0.18 ms against the own kernel's 0.34 on the H200), fp32 out; overlapped promotion, the
  // variant measured here (op table, troupe-demo-fp8, dsv3_model_bench).
  // (Not while a graph records: its tile upload would come after the replay's early return.)
  if (moe_grouped_gemm_supported(out_features, in) && n <= INT32_MAX && !in_graph()) {
    const std::vector<MoeGemmTile> tiles = moe_gemm_tiles(std::vector<int32_t>{0, int32_t(n)}.data(), 1);
    static_assert(sizeof(MoeGemmTile) == 5 * sizeof(int32_t), "tiles travel as i32 words");
    // One upload: the two pointers (first, 8-byte aligned), then the tiles.
    std::vector<int32_t> words(4 + tiles.size() * 5);
    const uintptr_t pointers[2] = {reinterpret_cast<uintptr_t>(w), reinterpret_cast<uintptr_t>(w_scale)};
    std::memcpy(words.data(), pointers, sizeof(pointers));
    std::memcpy(words.data() + 4, tiles.data(), tiles.size() * sizeof(MoeGemmTile));
    const Tensor d_words = on_device(Tensor::from_i32(words, {int64_t(words.size())}));
    const int32_t* base = d_words.data<int32_t>();
    const auto* table = reinterpret_cast<const uintptr_t*>(base);
    const cudaError_t grouped = launch_moe_grouped_gemm(
        xq, xs, reinterpret_cast<const uint8_t* const*>(table), reinterpret_cast<const float* const*>(table + 1),
        reinterpret_cast<const MoeGemmTile*>(base + 4), int32_t(tiles.size()), kMoeGemmTileRows, o, out_features, in,
        stream(), /*overlap=*/true);
    if (grouped == cudaSuccess) return true;
    if (grouped != cudaErrorNotSupported) {
      check(grouped, "moe_grouped_gemm (linear)");
      return true;
    }
    cudaGetLastError();
  }
  check(launch_fp8_block_gemm(xq, xs, w, w_scale, o, n, out_features, in, stream()), "fp8_block_gemm");
  return true;
}

void CudaBackend::fp8_block_product_bf16(const uint8_t* x_fp8, const float* x_scale, const uint8_t* w,
                                         const float* w_scale, uint16_t* out, int64_t m, int64_t n, int64_t k) {
  check(launch_fp8_product_bf16(cublas_, x_fp8, x_scale, w, w_scale, out, m, n, k, stream(), cublas_workspace_,
                                cublas_workspace_ ? kCublasWorkspaceBytes : 0),
        "fp8_block_product");
}

int CudaBackend::launch_fp8_product_bf16(void* lt_handle, const uint8_t* x_fp8, const float* x_scale,
                                         const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m, int64_t n,
                                         int64_t k, CUstream_st* on, void* workspace, size_t workspace_bytes) {
  const cudaError_t lt = launch_fp8_block_gemm_cublaslt(lt_handle, x_fp8, x_scale, w, w_scale, out, m, n, k,
                                                        workspace, workspace_bytes, on);
  if (lt != cudaErrorNotSupported) return lt;
  // Where cuBLASLt refuses the sizes, the own kernel.
  return launch_fp8_block_gemm(x_fp8, x_scale, w, w_scale, out, m, n, k, on);
}

bool CudaBackend::mlp_fp8_block(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias,
                                const Tensor& down_weight, const Tensor& down_bias, Tensor out) {
  const int64_t n = out.size(0), inter = down_weight.size(1), hidden = down_weight.size(0);
  if (n <= kFp8GemvMaxTokens || gate_up_bias.defined() || down_bias.defined() ||
      gate_up_weight.dtype() != DType::f8_e4m3 || down_weight.dtype() != DType::f8_e4m3 ||
      !gate_up_weight.has_block_scale() || !down_weight.has_block_scale() || gate_up_weight.dim() != 2 ||
      gate_up_weight.size(0) != 2 * inter || gate_up_weight.size(1) != hidden || out.dtype() != DType::f32 ||
      !fp8_block_gemm_cublaslt_shape(2 * inter, hidden) || !fp8_block_gemm_cublaslt_shape(hidden, inter))
    return false;
  Tensor dx = on_device(x);
  // One segment of n rows for silu_quant: the activation's scales are fp8_quant's [ceil(inter / 128), n].
  const Tensor rows = on_device(Tensor::from_i32({0, int32_t(n)}, {2}));
  if (replaying()) return true;
  Tensor xq = scratch(DType::f8_e4m3, {n, hidden}), xs = scratch(DType::f32, {fp8_num_blocks(hidden), n});
  check(dx.dtype() == DType::bf16
            ? launch_fp8_quant_bf16(dx.data<uint16_t>(), xq.data<uint8_t>(), xs.data<float>(), n, hidden, stream())
            : launch_fp8_quant_f32(dx.data<float>(), xq.data<uint8_t>(), xs.data<float>(), n, hidden, stream()),
        "fp8_quant");
  Tensor gate_up = scratch(DType::bf16, {n, 2 * inter});
  fp8_block_product_bf16(xq.data<uint8_t>(), xs.data<float>(), gate_up_weight.data<uint8_t>(),
                         gate_up_weight.block_scale().data<float>(), gate_up.data<uint16_t>(), n, 2 * inter, hidden);
  Tensor aq = scratch(DType::f8_e4m3, {n, inter}), as = scratch(DType::f32, {fp8_num_blocks(inter), n});
  check(launch_moe_silu_quant(gate_up.data<uint16_t>(), rows.data<int32_t>(), 1, aq.data<uint8_t>(),
                              as.data<float>(), n, inter, stream()),
        "silu_quant");
  Tensor y = scratch(DType::bf16, {n, hidden});
  fp8_block_product_bf16(aq.data<uint8_t>(), as.data<float>(), down_weight.data<uint8_t>(),
                         down_weight.block_scale().data<float>(), y.data<uint16_t>(), n, hidden, inter);
  check(launch_bf16_to_f32(y.data<uint16_t>(), out.data<float>(), n * hidden, stream()), "bf16_to_f32");
  return true;
}

namespace {
// TROUPE_DECODE_FUSION=0 runs linear_pair at decode sizes as two linear calls: a diagnostic for A/B
// runs, read once. (Prefill sizes quantize x once either way: the same products.)
bool decode_fusion_on() {
  static const bool on = [] {
    const char* env = std::getenv("TROUPE_DECODE_FUSION");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return on;
}
}  // namespace

void CudaBackend::linear_pair(const Tensor& x, const Tensor& weight_a, const Tensor& weight_b, Tensor out_a,
                              Tensor out_b) {
  const bool fp8 = weight_a.dtype() == DType::f8_e4m3 && weight_b.dtype() == DType::f8_e4m3 &&
                   weight_a.has_block_scale() && weight_b.has_block_scale();
  const int64_t k = weight_a.dim() == 2 ? weight_a.size(1) : 0;
  // Both FP8 block weights of one K, x bf16 or fp32, both outputs fp32: what either path below takes.
  const bool fp8_pair = fp8 && k > 0 && weight_b.dim() == 2 && weight_b.size(1) == k &&
                        out_a.dtype() == DType::f32 && out_b.dtype() == DType::f32 &&
                        (x.dtype() == DType::bf16 || x.dtype() == DType::f32);
  const bool back_to_back = fp8_pair && weight_a.size(0) % troupe::kFp8BlockSize == 0 &&
                            weight_a.is_followed_by(weight_b) &&
                            weight_a.block_scale().is_followed_by(weight_b.block_scale());
  const int64_t n = k > 0 ? x.numel() / k : 0;
  // Prefill sizes: x quantized once for both products (R1's q_a and kv_a read the same normed rows).
  if (fp8_pair && n > kFp8GemvMaxTokens && x.numel() == n * k &&
      fp8_linear_quantizes_x(n, weight_a.size(0), k, lt_min_tokens()) &&
      fp8_linear_quantizes_x(n, weight_b.size(0), k, lt_min_tokens())) {
    Tensor dx = on_device(x);
    if (replaying()) return;
    const Fp8Rows q = quantize_fp8_rows(dx, n, k);
    fp8_block_from_quantized(q, n, weight_a, weight_a.block_scale(), out_a, /*gemv_if_refused=*/false);
    fp8_block_from_quantized(q, n, weight_b, weight_b.block_scale(), out_b, /*gemv_if_refused=*/false);
    return;
  }
  if (!decode_fusion_on() || !back_to_back || n < 1 || n > kFp8GemvF16MaxTokens) {
    Backend::linear_pair(x, weight_a, weight_b, out_a, out_b);
    return;
  }
  Tensor dx = on_device(x);
  const int64_t rows = weight_a.size(0) + weight_b.size(0);
  if (fp8_linear_quantizes_x(n, rows, k, lt_min_tokens()) ||
      !fp8_gemv_runs_f16(n, rows, k, dx.raw(), weight_a.raw())) {
    Backend::linear_pair(dx, weight_a, weight_b, out_a, out_b);
    return;
  }
  if (replaying()) return;
  const uint8_t* w = weight_a.data<uint8_t>();
  const float* w_scale = weight_a.block_scale().data<float>();
  check(dx.dtype() == DType::bf16
            ? launch_fp8_gemv_f16_split(dx.data<uint16_t>(), w, w_scale, out_a.data<float>(), weight_a.size(0),
                                        out_b.data<float>(), weight_b.size(0), n, k, stream())
            : launch_fp8_gemv_f16_split(dx.data<float>(), w, w_scale, out_a.data<float>(), weight_a.size(0),
                                        out_b.data<float>(), weight_b.size(0), n, k, stream()),
        "fp8_gemv_f16_split");
}

}  // namespace troupe::cuda

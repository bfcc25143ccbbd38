// Op table rows: FP8 block-scaled linear layers against their CPU references: the activation
// quantization (bit-identical), the decode GEMV (bf16 x, fp32/bf16 out), the prefill GEMM (e4m3 x)
// and cuBLASLt's block-scaled GEMM on the same inputs. Sizes: DeepSeek-V3 shapes cut down, one
// token, K = 128, partial last K blocks, N not a multiple of 128 (partial scale rows), K % 16 != 0
// and misaligned weights (the byte-load paths).
#include <cublasLt.h>

#include <cmath>

#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

// Decode: products are exact (bf16 x e4m3 fits fp32), only the order and the tensor cores' fp32
// adds differ from the fp64 reference: NMSE ~1e-13 measured scale; 1e-9 leaves room, while a lost
// K block (NMSE >= 1/num_kb) or a wrong scale is far above it.
constexpr double kFp8GemvTolerance = 1e-9;
// Prefill: e4m3 x e4m3 products are exact, but Hopper's FP8 tensor cores add inside an MMA with
// fewer than fp32's bits (DeepSeek-V3 reports ~14), which the per-block promotion bounds to one
// K block: relative error ~1e-4 per block sum, NMSE ~1e-8; one dropped element of K = 7168 is 1e-4.
constexpr double kFp8GemmTolerance = 1e-6;

struct Fp8Shape {
  int64_t m, n, k, w_shift = 0;  // w_shift: bytes past a 256-byte aligned weight
  int range_bits = 0;            // K blocks of x also scaled by 2^-r, 1, 2^r in turn (the f16 kernel's exponents)
};

std::string fp8_sizes(const Fp8Shape& c) {
  std::string s = sizes({{"m", c.m}, {"n", c.n}, {"k", c.k}});
  if (c.w_shift) s += " w+" + std::to_string(c.w_shift);
  if (c.range_bits) s += " x*2^+-" + std::to_string(c.range_bits);
  return s;
}

// Checkpoint-like weights: e4m3 of N(0, 1) * 64 (subnormals to +-448), block scales 2^-12..2^-6.
void fill_fp8_weight(uint8_t* w, float* w_scale, const Fp8Shape& c, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 64.0f);
  for (int64_t i = 0; i < c.n * c.k; ++i) w[i] = host_f32_to_e4m3(normal(rng));
  std::uniform_real_distribution<float> u(6.0f, 12.0f);
  for (int64_t i = 0; i < fp8_num_blocks(c.n) * fp8_num_blocks(c.k); ++i) w_scale[i] = std::exp2(-u(rng));
}

// Activations with a spread of magnitudes: token t scaled by 10^(t % 5 - 2); channel 3 of every
// token zero, and the second K block of token 1 all zero (the amax guard).
void fill_activations(float* x, int64_t m, int64_t k, std::mt19937& rng) {
  fill_normal(x, size_t(m * k), rng);
  for (int64_t t = 0; t < m; ++t) {
    const float scale = std::pow(10.0f, float(t % 5 - 2));
    for (int64_t i = 0; i < k; ++i) x[t * k + i] *= scale;
    if (k > 3) x[t * k + 3] = 0.0f;
    if (t == 1)
      for (int64_t i = 128; i < std::min<int64_t>(k, 256); ++i) x[t * k + i] = 0.0f;
  }
}

// The bf16 bits of x, and x itself rounded to them.
uint16_t* to_bf16(OpRun& r, float* x, size_t count) {
  uint16_t* bits = r.host<uint16_t>(count);
  for (size_t i = 0; i < count; ++i) {
    bits[i] = host_f32_to_bf16(x[i]);
    x[i] = host_bf16_to_f32(bits[i]);
  }
  return bits;
}

// shift: x that many elements past an aligned address (1: the element-by-element path).
OpCase quant_case(Fp8Shape c, bool bf16_x, size_t shift = 0) {
  std::string dims = fp8_sizes(c);
  if (shift > 0) dims += " x_shift=" + std::to_string(shift);
  return {"fp8_quant", bf16_x ? "bf16->e4m3" : "f32->e4m3", dims, [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(c.m * c.k), scales = size_t(fp8_num_blocks(c.k) * c.m);
            float* x = r.host<float>(count);
            fill_activations(x, c.m, c.k, rng);
            uint8_t* q = r.poisoned<uint8_t>(count);
            float* s = r.poisoned<float>(scales);
            uint8_t* q_ref = r.host<uint8_t>(count);
            float* s_ref = r.host<float>(scales);
            if (bf16_x) {
              const uint16_t* dx = r.device(to_bf16(r, x, count), count, shift);
              r.launch = [=](cudaStream_t st) { return launch_fp8_quant_bf16(dx, q, s, c.m, c.k, st); };
            } else {
              const float* dx = r.device(x, count, shift);
              r.launch = [=](cudaStream_t st) { return launch_fp8_quant_f32(dx, q, s, c.m, c.k, st); };
            }
            r.reference = [=] { fp8_quant_ref(x, q_ref, s_ref, c.m, c.k); };
            r.expect("x_fp8", Elem::e4m3, q, q_ref, Elem::e4m3, count, kExact);
            r.expect("x_scale", Elem::f32, s, s_ref, Elem::f32, scales, kExact);
            r.bytes = double(count * (bf16_x ? 2 : 4) + count + scales * 4);
            return r;
          }};
}

// The weight and its scales on both sides; returns {device w, device w_scale}.
std::pair<const uint8_t*, const float*> make_weight(OpRun& r, const Fp8Shape& c, std::mt19937& rng, uint8_t** w_host,
                                                    float** scale_host) {
  const size_t w_count = size_t(c.n * c.k), scale_count = size_t(fp8_num_blocks(c.n) * fp8_num_blocks(c.k));
  *w_host = r.host<uint8_t>(w_count);
  *scale_host = r.host<float>(scale_count);
  fill_fp8_weight(*w_host, *scale_host, c, rng);
  return {r.device(*w_host, w_count, size_t(c.w_shift)), r.device(*scale_host, scale_count)};
}

// A decode product's inputs: the weight (make_weight), then x [m, k] on the host (fill_activations),
// drawn in that order.
struct DecodeProduct {
  uint8_t* w = nullptr;
  float* w_scale = nullptr;
  const uint8_t* dw = nullptr;
  const float* d_scale = nullptr;
  float* x = nullptr;
};
DecodeProduct decode_product(OpRun& r, const Fp8Shape& c, std::mt19937& rng) {
  DecodeProduct p;
  std::tie(p.dw, p.d_scale) = make_weight(r, c, rng, &p.w, &p.w_scale);
  p.x = r.host<float>(size_t(c.m * c.k));
  fill_activations(p.x, c.m, c.k, rng);
  return p;
}

// Expected outputs: fp64 (fp32 out) or the fp64 result rounded to bf16 (bf16 out).
void expect_out(OpRun& r, const void* out, bool bf16_out, const double* ref, uint16_t* ref_bf16, size_t count,
                double tolerance) {
  if (bf16_out) {
    r.expect("out", Elem::bf16, out, ref_bf16, Elem::bf16, count, kBf16Tolerance);
  } else {
    r.expect("out", Elem::f32, out, ref, Elem::f64, count, tolerance);
  }
}

void round_ref(const double* ref, uint16_t* ref_bf16, size_t count) {
  for (size_t i = 0; i < count; ++i) ref_bf16[i] = host_f32_to_bf16(float(ref[i]));
}

// kernel: nullptr for launch_fp8_block_gemv's own choice; "f16" for launch_fp8_gemv_f16 itself
// (its rows hold whatever the dispatch prefers on the GPU at hand); else the TROUPE_FP8_GEMV_KERNEL
// value that starts the choice lower ("rows", "tiles"), set around the launch.
OpCase gemv_case(Fp8Shape c, bool bf16_x, bool bf16_out, const char* kernel = nullptr) {
  const std::string variant = std::string(bf16_x ? "bf16 x" : "f32 x") + (bf16_out ? "->bf16" : "->f32") +
                              (kernel ? std::string(" [") + kernel + "]" : "");
  return {"fp8_block_gemv", variant, fp8_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const size_t x_count = size_t(c.m * c.k), out_count = size_t(c.m * c.n);
            auto [w, w_scale, dw, d_scale, x] = decode_product(r, c, rng);
            for (int64_t i = 0; c.range_bits && i < c.m * c.k; ++i)
              x[i] = std::ldexp(x[i], c.range_bits * int((i % c.k) / kFp8BlockSize % 3 - 1));
            const void* dx = nullptr;
            if (bf16_x) {
              dx = r.device(to_bf16(r, x, x_count), x_count);
            } else {
              dx = r.device(x, x_count);  // the kernel rounds to bf16; so does the reference's copy
              float* rounded = r.host<float>(x_count);
              for (size_t i = 0; i < x_count; ++i) rounded[i] = host_bf16_to_f32(host_f32_to_bf16(x[i]));
              x = rounded;
            }
            const size_t ws_bytes = fp8_block_gemv_workspace_bytes(c.m, c.n, c.k);
            void* ws = r.poisoned<unsigned char>(ws_bytes);
            void* out = bf16_out ? static_cast<void*>(r.poisoned<uint16_t>(out_count))
                                 : static_cast<void*>(r.poisoned<float>(out_count));
            double* ref = r.host<double>(out_count);
            uint16_t* ref_bf16 = r.host<uint16_t>(out_count);
            // f(x, out) with x and out cast to the case's dtypes.
            auto typed = [=](auto f) {
              if (bf16_x && bf16_out) return f(static_cast<const uint16_t*>(dx), static_cast<uint16_t*>(out));
              if (bf16_x) return f(static_cast<const uint16_t*>(dx), static_cast<float*>(out));
              if (bf16_out) return f(static_cast<const float*>(dx), static_cast<uint16_t*>(out));
              return f(static_cast<const float*>(dx), static_cast<float*>(out));
            };
            auto launch = [=](cudaStream_t s) {
              return typed([&](auto xp, auto op) {
                return launch_fp8_block_gemv(xp, dw, d_scale, op, c.m, c.n, c.k, ws, ws_bytes, s);
              });
            };
            auto launch_f16 = [=](cudaStream_t s) {
              return typed([&](auto xp, auto op) { return launch_fp8_gemv_f16(xp, dw, d_scale, op, c.m, c.n, c.k, s); });
            };
            r.launch = [=](cudaStream_t s) {
              if (!kernel) return launch(s);
              if (std::string(kernel) == "f16") return launch_f16(s);
              setenv("TROUPE_FP8_GEMV_KERNEL", kernel, 1);
              const cudaError_t err = launch(s);
              unsetenv("TROUPE_FP8_GEMV_KERNEL");
              return err;
            };
            r.reference = [=] {
              fp8_block_gemm_ref(x, nullptr, w, w_scale, ref, c.m, c.n, c.k);
              round_ref(ref, ref_bf16, out_count);
            };
            expect_out(r, out, bf16_out, ref, ref_bf16, out_count, kFp8GemvTolerance);
            r.bytes = double(c.n * c.k + fp8_num_blocks(c.n) * fp8_num_blocks(c.k) * 4) +
                      double(x_count * (bf16_x ? 2 : 4) + out_count * (bf16_out ? 2 : 4));
            return r;
          }};
}

// x for a decode product (bf16 bits or fp32 on the device); `x` becomes the values the kernel
// reads (rounded to bf16).
const void* decode_x(OpRun& r, float*& x, size_t count, bool bf16_x) {
  if (bf16_x) return r.device(to_bf16(r, x, count), count);
  const void* dx = r.device(x, count);  // the kernel rounds to bf16; so does the reference's copy
  float* rounded = r.host<float>(count);
  for (size_t i = 0; i < count; ++i) rounded[i] = host_bf16_to_f32(host_f32_to_bf16(x[i]));
  x = rounded;
  return dx;
}

// Two products in one launch (launch_fp8_gemv_f16_split): rows [0, n_a) of the weight to out_a,
// the rest to out_b, each against its columns of the full product.
OpCase gemv_split_case(Fp8Shape c, int64_t n_a, bool bf16_x) {
  return {"fp8_gemv_f16_split", std::string(bf16_x ? "bf16 x" : "f32 x") + "->f32 n_a " + std::to_string(n_a),
          fp8_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const int64_t n_b = c.n - n_a;
            const size_t x_count = size_t(c.m * c.k);
            auto [w, w_scale, dw, d_scale, x] = decode_product(r, c, rng);
            const void* dx = decode_x(r, x, x_count, bf16_x);
            float* out_a = r.poisoned<float>(size_t(c.m * n_a));
            float* out_b = r.poisoned<float>(size_t(c.m * n_b));
            double* full = r.host<double>(size_t(c.m * c.n));
            double* ref_a = r.host<double>(size_t(c.m * n_a));
            double* ref_b = r.host<double>(size_t(c.m * n_b));
            r.launch = [=](cudaStream_t s) {
              return bf16_x ? launch_fp8_gemv_f16_split(static_cast<const uint16_t*>(dx), dw, d_scale, out_a, n_a,
                                                        out_b, n_b, c.m, c.k, s)
                            : launch_fp8_gemv_f16_split(static_cast<const float*>(dx), dw, d_scale, out_a, n_a,
                                                        out_b, n_b, c.m, c.k, s);
            };
            r.reference = [=] {
              fp8_block_gemm_ref(x, nullptr, w, w_scale, full, c.m, c.n, c.k);
              for (int64_t t = 0; t < c.m; ++t) {
                for (int64_t j = 0; j < n_a; ++j) ref_a[t * n_a + j] = full[t * c.n + j];
                for (int64_t j = 0; j < n_b; ++j) ref_b[t * n_b + j] = full[t * c.n + n_a + j];
              }
            };
            r.expect("out_a", Elem::f32, out_a, ref_a, Elem::f64, size_t(c.m * n_a), kFp8GemvTolerance);
            r.expect("out_b", Elem::f32, out_b, ref_b, Elem::f64, size_t(c.m * n_b), kFp8GemvTolerance);
            r.bytes = double(c.n * c.k + x_count * (bf16_x ? 2 : 4) + c.m * c.n * 4);
            return r;
          }};
}

// The product of an RMS-normed x (launch_fp8_gemv_f16_rmsnorm) against rmsnorm in fp64, not rounded,
// then fp8_block_gemm_ref. The kernel rounds x * norm_weight to f16 with its block's exponent (at
// most 2^-11 relative a value), so the output's NMSE should be about 1e-7 (an estimate from the
// rounding's variance, not yet measured); bounded at 1e-6, which x rounded to bf16 first (about
// 1.3e-6 by the same estimate), a wrong rsqrt, a token's squares summed into another's or a norm
// weight off by one column would exceed.
// Tokens 10^-2..10^2 apart in scale (fill_activations), so each token's own rsqrt shows.
constexpr double kFp8GemvNormTolerance = 1e-6;
OpCase gemv_norm_case(Fp8Shape c) {
  return {"fp8_gemv_f16_rmsnorm", "f32 x->f32", fp8_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const size_t x_count = size_t(c.m * c.k), out_count = size_t(c.m * c.n);
            auto [w, w_scale, dw, d_scale, x] = decode_product(r, c, rng);
            float* norm = r.host<float>(size_t(c.k));
            std::normal_distribution<float> around_one(1.0f, 0.3f);
            for (int64_t i = 0; i < c.k; ++i) norm[i] = around_one(rng);
            constexpr float eps = 1e-6f;
            const float* dx = r.device(x, x_count);
            const float* d_norm = r.device(norm, size_t(c.k));
            float* out = r.poisoned<float>(out_count);
            float* normed = r.host<float>(x_count);
            double* ref = r.host<double>(out_count);
            r.launch = [=](cudaStream_t s) {
              return launch_fp8_gemv_f16_rmsnorm(dx, d_norm, eps, dw, d_scale, out, c.m, c.n, c.k, s);
            };
            r.reference = [=] {
              for (int64_t t = 0; t < c.m; ++t) {
                double squares = 0;
                for (int64_t i = 0; i < c.k; ++i) squares += double(x[t * c.k + i]) * x[t * c.k + i];
                const double inv = 1.0 / std::sqrt(squares / double(c.k) + eps);
                for (int64_t i = 0; i < c.k; ++i) normed[t * c.k + i] = float(x[t * c.k + i] * inv * norm[i]);
              }
              fp8_block_gemm_ref(normed, nullptr, w, w_scale, ref, c.m, c.n, c.k);
            };
            r.expect("out", Elem::f32, out, ref, Elem::f64, out_count, kFp8GemvNormTolerance);
            r.bytes = double(c.n * c.k + x_count * 4 + out_count * 4);
            return r;
          }};
}

cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t handle = [] {
    cublasLtHandle_t h = nullptr;
    return cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS ? h : nullptr;
  }();
  return handle;
}

// The prefill GEMM on host-quantized activations (fp8_quant_ref), so the row tests the GEMM alone.
// cublaslt: cuBLASLt's block-scaled GEMM instead of the own kernel.
OpCase gemm_case(Fp8Shape c, bool bf16_out, bool cublaslt) {
  const std::string variant = std::string(cublaslt ? "cublaslt " : "") + (bf16_out ? "e4m3->bf16" : "e4m3->f32");
  return {cublaslt ? "fp8_block_gemm_lt" : "fp8_block_gemm", variant, fp8_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const size_t x_count = size_t(c.m * c.k), out_count = size_t(c.m * c.n);
            const size_t xs_count = size_t(fp8_num_blocks(c.k) * c.m);
            auto [w, w_scale, dw, d_scale, x] = decode_product(r, c, rng);
            uint8_t* xq = r.host<uint8_t>(x_count);
            float* xs = r.host<float>(xs_count);
            fp8_quant_ref(x, xq, xs, c.m, c.k);
            for (size_t i = 0; i < x_count; ++i) x[i] = host_e4m3_to_f32(xq[i]);
            const uint8_t* dxq = r.device(xq, x_count);
            const float* dxs = r.device(xs, xs_count);
            constexpr size_t kLtWorkspace = size_t(32) << 20;
            void* ws = cublaslt ? r.poisoned<unsigned char>(kLtWorkspace) : nullptr;
            void* out = bf16_out ? static_cast<void*>(r.poisoned<uint16_t>(out_count))
                                 : static_cast<void*>(r.poisoned<float>(out_count));
            double* ref = r.host<double>(out_count);
            uint16_t* ref_bf16 = r.host<uint16_t>(out_count);
            r.launch = [=](cudaStream_t s) {
              if (cublaslt && bf16_out)
                return launch_fp8_block_gemm_cublaslt(lt_handle(), dxq, dxs, dw, d_scale, static_cast<uint16_t*>(out),
                                                      c.m, c.n, c.k, ws, kLtWorkspace, s);
              if (cublaslt)
                return launch_fp8_block_gemm_cublaslt(lt_handle(), dxq, dxs, dw, d_scale, static_cast<float*>(out),
                                                      c.m, c.n, c.k, ws, kLtWorkspace, s);
              if (bf16_out)
                return launch_fp8_block_gemm(dxq, dxs, dw, d_scale, static_cast<uint16_t*>(out), c.m, c.n, c.k, s);
              return launch_fp8_block_gemm(dxq, dxs, dw, d_scale, static_cast<float*>(out), c.m, c.n, c.k, s);
            };
            r.reference = [=] {
              fp8_block_gemm_ref(x, xs, w, w_scale, ref, c.m, c.n, c.k);
              round_ref(ref, ref_bf16, out_count);
            };
            expect_out(r, out, bf16_out, ref, ref_bf16, out_count, kFp8GemmTolerance);
            r.bytes = double(c.n * c.k + x_count + out_count * (bf16_out ? 2 : 4));
            return r;
          }};
}

}  // namespace

void add_fp8_cases(std::vector<OpCase>& t) {
  const Fp8Shape quant[] = {{1, 0, 128}, {3, 0, 328}, {17, 0, 7168}, {130, 0, 200}, {5, 0, 99}};
  for (const Fp8Shape& c : quant) t.push_back(quant_case(c, true));
  for (const Fp8Shape& c : quant) t.push_back(quant_case(c, false));
  // 16-byte loads need k % 8 == 0 and aligned rows: k = 300 (an odd 3 blocks) element by element,
  // and aligned sizes at a shifted address.
  t.push_back(quant_case({9, 0, 300}, true));
  t.push_back(quant_case({9, 0, 328}, true, 1));
  t.push_back(quant_case({9, 0, 328}, false, 1));

  // Decode: q_a, kv_a, expert down; a partial scale row (n 200, 130); partial last K block (328,
  // 1000); K = 128; K % 16 != 0 (520 + 8) and a misaligned weight (the byte paths); every token
  // tile count (1, 2, 4, 8 tiles of 8). Up to 8 tokens with k % 16 == 0 may take fp8_gemv_f16.cu
  // (its plan picks 8, 4, 2 or 1 warps per 16-row tile by shape and occupancy), where it has at
  // least as many tiles as the GPU has SMs (4096 x 1024 at 1 token, 2200 x 2064 at 3: a partial
  // tile, scale row and K block), one token next fp8_gemv_rows.cu, the rest this file's tensor-core
  // kernel. The same shapes through each kernel in turn: [f16] launches fp8_gemv_f16 itself: a last
  // chunk of 16 bytes and a last tile of one row (257 x 4112); a partial scale row and 144 K blocks
  // (520 x 18432); kv_a (576 x 7168); K = 128 (128 x 128); q_b's K with a partial scale row
  // (600 x 1536); kv_b's (300 x 512); 6 tokens, a partial scale row and a last K block of 16
  // (130 x 4112); 360 K blocks, past 48 KB of staged x (64 x 46080; 8 tokens: 600 x 4096); x
  // blocks 2^40 apart (384 x 1536, 4 tokens); [rows] and [tiles] start the dispatch lower. K % 16 != 0 (200 x 328) and
  // misaligned weights (384 x 1024 w+1) take the tensor-core kernel whatever the switch.
  const Fp8Shape gemv[] = {{1, 1536, 7168},   {8, 576, 7168},  {64, 7168, 2048}, {3, 200, 328},
                           {17, 130, 128},    {1, 128, 128},   {33, 300, 1000},  {64, 257, 520 + 8},
                           {5, 384, 1024, 1}, {12, 2048, 512}, {1, 257, 4112},   {1, 520, 18432},
                           {1, 200, 328},     {1, 576, 7168},  {1, 600, 1536},   {1, 300, 512},
                           {1, 384, 1024, 1}, {6, 130, 4112},  {1, 64, 46080},   {4, 384, 1536, 0, 40},
                           {1, 4096, 1024},   {3, 2200, 2064}, {8, 600, 4096}};
  for (const Fp8Shape& c : gemv) t.push_back(gemv_case(c, true, false));
  for (const Fp8Shape& c : {gemv[0], gemv[3], gemv[6], gemv[8], gemv[10], gemv[17], gemv[21]})
    t.push_back(gemv_case(c, true, true));
  for (const Fp8Shape& c : {gemv[1], gemv[4], gemv[7], gemv[10], gemv[14], gemv[19], gemv[20]})
    t.push_back(gemv_case(c, false, false));
  t.push_back(gemv_case(gemv[3], false, true));
  t.push_back(gemv_case(gemv[10], false, true));
  for (const Fp8Shape& c : {gemv[0], gemv[22], gemv[5], gemv[10], gemv[11], gemv[13], gemv[14], gemv[15], gemv[17],
                            gemv[18], gemv[19]})
    t.push_back(gemv_case(c, true, false, "f16"));
  t.push_back(gemv_case(gemv[10], false, true, "f16"));
  t.push_back(gemv_case(gemv[17], true, true, "f16"));
  t.push_back(gemv_case(gemv[19], false, false, "f16"));
  for (const Fp8Shape& c : {gemv[10], gemv[11], gemv[13], gemv[5], gemv[20]}) t.push_back(gemv_case(c, true, false, "rows"));
  t.push_back(gemv_case(gemv[10], false, true, "rows"));
  for (const Fp8Shape& c : {gemv[1], gemv[17], gemv[0], gemv[21]}) t.push_back(gemv_case(c, true, false, "tiles"));

  // Two products in one launch: R1's q_a + kv_a (1536 + 576 x 7168, one token and 6, the most whose x fits the staging), 128 + 72 rows with a partial K block (3
  // tokens, K 336), 256 + 130 (a partial last scale row, 5 tokens).
  t.push_back(gemv_split_case({1, 2112, 7168}, 1536, true));
  t.push_back(gemv_split_case({6, 2112, 7168}, 1536, true));
  t.push_back(gemv_split_case({3, 200, 336}, 128, false));
  t.push_back(gemv_split_case({5, 386, 1024}, 256, true));

  // The norm in the staging: R1's q_b K (1,536) at 1 and 8 tokens; a partial tile, scale row and K
  // block (3 tokens, 2200 x 2064); a last K block of 16 (1040); few tiles (the launcher takes them,
  // the backend does not ask it to).
  for (const Fp8Shape& c : std::vector<Fp8Shape>{{1, 4096, 1536}, {8, 4096, 1536}, {3, 2200, 2064}, {2, 2112, 1040},
                                                 {5, 200, 336}})
    t.push_back(gemv_norm_case(c));

  // Prefill: M = 1, 3, 17, 130 and tiles of 128; partial N and K blocks; K % 16 != 0 (328, 1000).
  const Fp8Shape gemm[] = {{1, 200, 328},   {3, 256, 128},    {17, 130, 384},    {130, 576, 2048},
                           {130, 200, 328}, {256, 1536, 512}, {64, 384, 1000},   {300, 520, 1024},
                           {129, 129, 136, 1}};
  for (const Fp8Shape& c : gemm) t.push_back(gemm_case(c, false, false));
  for (const Fp8Shape& c : {gemm[0], gemm[3], gemm[7]}) t.push_back(gemm_case(c, true, false));
  // cuBLASLt, bf16 out only, at a size it takes: on the H200 (CUDA 13) it refuses an fp32 D with
  // block scales and m = 130 (cudaErrorNotSupported; CudaBackend then runs the own kernel).
  t.push_back(gemm_case(gemm[5], true, true));
}

}  // namespace troupe::backend_ops

// CudaBackend::linear on FP8 block weights kept in HBM, at the shapes of a real model, against the
// CPU reference of the same formula: the GEMV (up to 64 tokens, activations as given) and the
// prefill path (activations quantized per token and 128 channels, then cuBLASLt where it takes
// the shape, else the own kernel), which decode sizes from kFp8LtMinTokens take where cuBLASLt
// takes the shape. troupe-demo-fp8's shapes (k = 128, 256, 768; n = 80) are here
// because cuBLASLt once got them wrong while the op table checked only R1's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_quant.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
namespace {

struct Shape {
  int64_t m, n, k;
};

// A random FP8 block weight [n, k] on the host with its scales: no NaN bytes, scales 2^-9..2^-7.
Tensor random_fp8_weight(int64_t n, int64_t k, std::mt19937& rng) {
  const int64_t kb = (k + 127) / 128, nb = (n + 127) / 128;
  Tensor w = Tensor::empty(DType::f8_e4m3, {n, k});
  for (int64_t i = 0; i < n * k; ++i) w.data<uint8_t>()[i] = uint8_t((rng() % 0x7E) | (rng() % 2 ? 0x80 : 0));
  Tensor scale = Tensor::empty(DType::f32, {nb, kb});
  std::uniform_real_distribution<float> scale_dist(0.5f / 256, 2.0f / 256);
  for (int64_t i = 0; i < nb * kb; ++i) scale.data<float>()[i] = scale_dist(rng);
  w.set_block_scale(std::move(scale));
  return w;
}

// x [m, k] of N(0, 1) on the host.
Tensor random_x(int64_t m, int64_t k, std::mt19937& rng) {
  Tensor x = Tensor::empty(DType::f32, {m, k});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < m * k; ++i) x.data<float>()[i] = normal(rng);
  return x;
}

TEST(CudaFp8Linear, MatchesTheReferenceAtModelShapesOnBothPaths) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  ASSERT_TRUE(gpu.keeps_fp8_weights());
  std::mt19937 rng(11);
  const Shape shapes[] = {
      // troupe-demo-fp8: kv_a, q_b, expert down, dense gate_up, dense down; decode and prefill sizes
      {1, 80, 256},   {200, 80, 256}, {200, 384, 128}, {64, 384, 128}, {200, 256, 128},
      {65, 1536, 256}, {200, 256, 768},
      // R1-like whole-block shapes that cuBLASLt takes, at prefill sizes, at the decode sizes that
      // take it (multiples of 16 from kFp8LtMinTokens to 64) and at 17, which keeps the decode kernel
      {200, 512, 512}, {300, 1536, 2048}, {16, 512, 512}, {17, 1536, 2048}, {32, 1536, 2048}, {48, 512, 512},
      {64, 512, 512}, {64, 1536, 2048}};
  for (const Shape& s : shapes) {
    const int64_t kb = (s.k + 127) / 128;
    const Tensor w = random_fp8_weight(s.n, s.k, rng);
    const uint8_t* wb = w.data<uint8_t>();
    const float* w_scale = w.block_scale().data<float>();
    auto uploaded = gpu.upload_weight(w);
    ASSERT_TRUE(uploaded.ok()) << uploaded.error().message;

    const Tensor x = random_x(s.m, s.k, rng);
    Tensor out = gpu.empty(DType::f32, {s.m, s.n});
    gpu.linear(x, uploaded.value(), Tensor(), out);
    const Tensor got = gpu.to_host(out);
    ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;

    // The reference: the prefill path quantizes x as fp8_quant does; the GEMV reads it as it is.
    std::vector<double> ref(size_t(s.m * s.n));
    if (kernels::fp8_linear_quantizes_x(s.m, s.n, s.k)) {
      std::vector<uint8_t> xq(size_t(s.m * s.k));
      std::vector<float> xs(size_t(kb * s.m)), xdec(size_t(s.m * s.k));
      kernels::fp8_quant_ref(x.data<float>(), xq.data(), xs.data(), s.m, s.k);
      for (size_t i = 0; i < xq.size(); ++i) xdec[i] = f8_e4m3_to_f32(xq[i]);
      kernels::fp8_block_gemm_ref(xdec.data(), xs.data(), wb, w_scale, ref.data(), s.m, s.n, s.k);
    } else {
      kernels::fp8_block_gemm_ref(x.data<float>(), nullptr, wb, w_scale, ref.data(), s.m, s.n, s.k);
    }
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_ref = std::max(max_ref, std::abs(ref[i]));
      max_diff = std::max(max_diff, std::abs(ref[i] - double(got.data<float>()[i])));
    }
    // bf16 output of cuBLASLt: 2^-8 relative; the GEMV's bf16 weights-times-x rounding similar.
    std::printf("m %lld n %lld k %lld (%s): max |diff| %.3g of max |ref| %.3g\n", (long long)s.m, (long long)s.n,
                (long long)s.k, kernels::fp8_linear_quantizes_x(s.m, s.n, s.k) ? "x quantized" : "decode kernel",
                max_diff, max_ref);
    EXPECT_LE(max_diff, 1e-2 * max_ref) << "m " << s.m << " n " << s.n << " k " << s.k << ": max |diff| "
                                         << max_diff << " of max |ref| " << max_ref;
  }
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(double(t.data<float>()[i])));
  return m;
}
double max_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(double(a.data<float>()[i]) - double(b.data<float>()[i])));
  return m;
}

// linear_pair against linear on each weight, on R1's q_a + kv_a in one buffer as MlaAttention
// loads them (1,536 + 576 rows, views with their scale rows): one launch of the split f16 kernel
// up to 6 tokens, two linear calls at 8 (x does not fit the kernel's staging), and past 64 tokens x
// quantized once for both products (the same GEMMs as linear's). Both sides sum exact products in
// fp32 (different kernels, different orders): 1e-5 of the largest output, far below a lost tile,
// K block or scale row.
TEST(CudaFp8Linear, LinearPairMatchesTwoLinearCalls) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  std::mt19937 rng(12);
  const int64_t hidden = 7168, q_rows = 1536, kv_rows = 576;
  auto uploaded = gpu.upload_weight(random_fp8_weight(q_rows + kv_rows, hidden, rng));
  ASSERT_TRUE(uploaded.ok()) << uploaded.error().message;
  const Tensor& fused = uploaded.value();
  Tensor q_a = fused.rows(0, q_rows), kv_a = fused.rows(q_rows, kv_rows);
  q_a.set_block_scale(fused.block_scale().rows(0, q_rows / 128));
  kv_a.set_block_scale(fused.block_scale().rows(q_rows / 128, fused.block_scale().size(0) - q_rows / 128));
  for (int64_t m : {1, 6, 8, 65, 256}) {
    const Tensor x = random_x(m, hidden, rng);
    Tensor a = gpu.empty(DType::f32, {m, q_rows}), b = gpu.empty(DType::f32, {m, kv_rows});
    Tensor ref_a = gpu.empty(DType::f32, {m, q_rows}), ref_b = gpu.empty(DType::f32, {m, kv_rows});
    gpu.linear_pair(x, q_a, kv_a, a, b);
    gpu.linear(x, q_a, Tensor(), ref_a);
    gpu.linear(x, kv_a, Tensor(), ref_b);
    const Tensor ha = gpu.to_host(a), hb = gpu.to_host(b), hra = gpu.to_host(ref_a), hrb = gpu.to_host(ref_b);
    ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;
    EXPECT_LE(max_diff(ha, hra), 1e-5 * max_abs(hra)) << "q_a, m " << m;
    EXPECT_LE(max_diff(hb, hrb), 1e-5 * max_abs(hrb)) << "kv_a, m " << m;
  }
}

}  // namespace
}  // namespace troupe::cuda

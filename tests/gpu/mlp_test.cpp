// CudaBackend::mlp against an fp64 reference from the same bf16 weights: the decode path (gate/up
// GEMV, bf16 activation, down GEMV) and the prefill path (bf16 gate/up product and activation,
// cuBLAS), on awkward sizes, and the default path's agreement too.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "runtime/dtype.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
namespace {

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

std::vector<float> random_values(size_t count, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(count);
  for (float& x : v) x = round_bf16(dist(rng));  // representable in bf16: every path sees the same input
  return v;
}

struct Reference {
  std::vector<double> out, scale;  // scale: sum_i |act_i * w_i| + |bias|, per output
};

Reference mlp_reference(const std::vector<float>& x, const std::vector<float>& gate_up_w,
                        const std::vector<float>& down_w, const std::vector<float>& down_b, int64_t n,
                        int64_t hidden, int64_t inter) {
  Reference r;
  r.out.assign(size_t(n * hidden), 0.0);
  r.scale.assign(size_t(n * hidden), 0.0);
  std::vector<double> act(static_cast<size_t>(inter), 0.0);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (int64_t k = 0; k < hidden; ++k) {
        const double xv = x[size_t(t * hidden + k)];
        g += xv * round_bf16(gate_up_w[size_t(i * hidden + k)]);
        u += xv * round_bf16(gate_up_w[size_t((inter + i) * hidden + k)]);
      }
      act[size_t(i)] = g / (1.0 + std::exp(-g)) * u;
    }
    for (int64_t o = 0; o < hidden; ++o) {
      double sum = down_b.empty() ? 0.0 : down_b[size_t(o)], scale = down_b.empty() ? 0.0 : std::fabs(down_b[size_t(o)]);
      for (int64_t i = 0; i < inter; ++i) {
        const double term = act[size_t(i)] * round_bf16(down_w[size_t(o * inter + i)]);
        sum += term;
        scale += std::fabs(term);
      }
      r.out[size_t(t * hidden + o)] = sum;
      r.scale[size_t(t * hidden + o)] = scale;
    }
  }
  return r;
}

// Both paths round the activation to bf16 (2^-9 relative), the prefill path the gate/up product
// too (silu's slope stays below 1.1): within 1e-2 of the scale (sum of |terms|).
TEST(CudaMlp, DecodeAndPrefillPathsMatchAnFp64Reference) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = **created;
  std::mt19937 rng(99);
  struct Case {
    int64_t n, hidden, inter;
    bool bias;
  };
  const Case cases[] = {{1, 256, 1024, false}, {3, 96, 1000, true},  {8, 512, 344, false},
                        {9, 256, 1024, false}, {99, 200, 1000, true}, {300, 128, 1376, false}};
  for (const Case& c : cases) {
    const std::vector<float> x = random_values(size_t(c.n * c.hidden), 1.0f, rng);
    const std::vector<float> gate_up_w = random_values(size_t(2 * c.inter * c.hidden), 0.08f, rng);
    const std::vector<float> down_w = random_values(size_t(c.hidden * c.inter), 0.05f, rng);
    const std::vector<float> down_b = c.bias ? random_values(size_t(c.hidden), 0.1f, rng) : std::vector<float>{};
    auto w_gu = gpu.upload_weight(Tensor::from_f32(gate_up_w, {2 * c.inter, c.hidden}));
    auto w_d = gpu.upload_weight(Tensor::from_f32(down_w, {c.hidden, c.inter}));
    ASSERT_TRUE(w_gu.ok() && w_d.ok());
    Tensor bias;
    if (c.bias) {
      auto b = gpu.upload_weight(Tensor::from_f32(down_b, {c.hidden}));
      ASSERT_TRUE(b.ok());
      bias = b.value();
    }
    Tensor d_x = gpu.empty(DType::f32, {c.n, c.hidden});
    gpu.copy(Tensor::from_f32(x, {c.n, c.hidden}), d_x);
    Tensor out = gpu.empty(DType::f32, {c.n, c.hidden});
    gpu.copy(Tensor::from_f32(std::vector<float>(size_t(c.n * c.hidden), NAN), {c.n, c.hidden}), out);  // poison
    gpu.mlp(d_x, w_gu.value(), Tensor(), w_d.value(), bias, out);
    Tensor fallback = gpu.empty(DType::f32, {c.n, c.hidden});
    gpu.Backend::mlp(d_x, w_gu.value(), Tensor(), w_d.value(), bias, fallback);  // linear + silu + linear
    ASSERT_EQ(gpu.take_error(), "");
    const std::vector<float> got = gpu.to_host(out).to_f32_vector();
    const std::vector<float> unfused = gpu.to_host(fallback).to_f32_vector();
    const Reference ref = mlp_reference(x, gate_up_w, down_w, down_b, c.n, c.hidden, c.inter);
    const double tolerance = 1e-2;
    double worst = 0, worst_unfused = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << "n " << c.n << " element " << i;
      worst = std::max(worst, std::fabs(got[i] - ref.out[i]) / (ref.scale[i] + 1e-6));
      worst_unfused = std::max(worst_unfused, std::fabs(unfused[i] - ref.out[i]) / (ref.scale[i] + 1e-6));
    }
    EXPECT_LE(worst, tolerance) << "n " << c.n << " hidden " << c.hidden << " inter " << c.inter;
    EXPECT_LE(worst_unfused, 1e-2) << "default path, n " << c.n;
    std::printf("mlp n %lld hidden %lld inter %lld: max error / scale %.2e (default path %.2e)\n", (long long)c.n,
                (long long)c.hidden, (long long)c.inter, worst, worst_unfused);
  }
}

}  // namespace
}  // namespace troupe::cuda

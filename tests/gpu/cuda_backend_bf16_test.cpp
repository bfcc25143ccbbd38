// The CUDA backend's bf16 product inputs (matmul_input_dtype): rmsnorm, add_rmsnorm and
// silu_and_mul_packed writing bf16, gather_rows over bf16 rows, and linear reading bf16 x (GEMV at
// n <= 8, cuBLAS above), against the CPU backend rounded to bf16, on awkward sizes with poisoned
// outputs.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backends/cuda/cuda_backend.hpp"
#include "kernels/gemv.hpp"
#include "backends/cpu_backend.hpp"
#include "runtime/dtype.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
using namespace kernels;
namespace {

// bf16 keeps 8 significant bits: one unit in the last place of v is 2^(floor(log2 |v|) - 7), between
// 2^-8 and 2^-7 of |v|. The GPU's fp32 value differs from the CPU's only by summation order and
// expf (~1e-6 relative), so after both round to nearest even they agree exactly or, when a rounding
// boundary lies between them, by one ulp: |gpu - bf16(cpu)| <= 1 ulp of bf16(cpu), and at most 1%
// of the values may differ at all (a boundary within 1e-6 is hit ~1e-4 of the time).
constexpr double kMaxUlpMismatchFraction = 0.01;

std::vector<float> random_values(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count));
  for (auto& v : values) v = normal(rng);
  return values;
}

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// A host bf16 tensor holding `values` rounded to nearest even.
Tensor host_bf16(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = Tensor::empty(DType::bf16, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<uint16_t>()[i] = f32_to_bf16(values[i]);
  return t;
}

struct Bf16Comparison {
  double worst_ulps = 0;         // max |actual - expected| / ulp(expected); inf on NaN
  double mismatch_fraction = 0;  // values not bit-identical
};

// actual: bf16 values from the GPU; reference: the CPU's fp32 values, rounded here.
Bf16Comparison compare_bf16(const std::vector<float>& actual, const std::vector<float>& reference) {
  Bf16Comparison c;
  if (actual.size() != reference.size()) return {INFINITY, 1.0};
  int64_t mismatches = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const float expected = round_bf16(reference[i]);
    if (!std::isfinite(actual[i])) return {INFINITY, 1.0};
    if (actual[i] == expected) continue;
    ++mismatches;
    const double ulp = expected == 0.0f ? 1e-30 : std::ldexp(1.0, std::ilogb(expected) - 7);
    c.worst_ulps = std::max(c.worst_ulps, std::fabs(double(actual[i]) - expected) / ulp);
  }
  c.mismatch_fraction = actual.empty() ? 0.0 : double(mismatches) / double(actual.size());
  return c;
}

class CudaBackendBf16Inputs : public ::testing::Test {
 protected:
  void SetUp() override {
    TROUPE_REQUIRE_GPU();
    auto created = CudaBackend::create(0, DType::bf16);
    ASSERT_TRUE(created.ok()) << created.error().message;
    gpu_ = std::move(created.value());
  }
  // A device copy of a host tensor, any dtype (upload_weight would round 2-D fp32 to bf16).
  Tensor up(const Tensor& host) {
    Tensor d = gpu_->empty(host.dtype(), host.shape());
    EXPECT_EQ(cudaMemcpy(d.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
    return d;
  }
  // A device tensor of all-ones bits: NaN in fp32 and in bf16, so a skipped element shows.
  Tensor poisoned(DType dtype, std::vector<int64_t> shape) {
    Tensor d = gpu_->empty(dtype, std::move(shape));
    cudaMemset(d.raw(), 0xff, d.nbytes());
    return d;
  }
  std::vector<float> down(const Tensor& t) { return gpu_->to_host(t).to_f32_vector(); }
  void expect_bf16_near(const Tensor& actual, const Tensor& reference, const std::string& what) {
    const Bf16Comparison c = compare_bf16(down(actual), reference.to_f32_vector());
    EXPECT_LE(c.worst_ulps, 1.0) << what;
    EXPECT_LE(c.mismatch_fraction, kMaxUlpMismatchFraction) << what;
  }

  CpuBackend cpu_{2};
  std::unique_ptr<CudaBackend> gpu_;
  std::mt19937 rng_{2024};
};

TEST_F(CudaBackendBf16Inputs, DtypeFollowsTheWeights) {
  EXPECT_EQ(gpu_->matmul_input_dtype(), DType::bf16);
  auto f32 = CudaBackend::create(0, DType::f32);
  ASSERT_TRUE(f32.ok()) << f32.error().message;
  EXPECT_EQ((*f32)->matmul_input_dtype(), DType::f32);
  EXPECT_EQ(cpu_.matmul_input_dtype(), DType::f32);
}

// 4096 and 4100 take add_rmsnorm's wide float4 kernel (8-byte bf16 stores), 1000 and 1001 the
// general one; the shifted output (row 1 of a bigger tensor, 8-byte aligned at 4100) forces the
// general kernel at 4100 too. silu_and_mul_packed: 1001 runs the one-output-a-thread kernel, the
// others the float4 one.
TEST_F(CudaBackendBf16Inputs, NormsAndActivationWriteBf16OnAwkwardSizes) {
  for (int64_t n : {1, 19, 99, 989}) {
    for (int64_t hidden : {1000, 1001, 4096, 4100}) {
      const std::string where = " n=" + std::to_string(n) + " hidden=" + std::to_string(hidden);
      Tensor x = Tensor::from_f32(random_values(n * hidden, rng_), {n, hidden});
      Tensor y = Tensor::from_f32(random_values(n * hidden, rng_), {n, hidden});
      Tensor w = Tensor::from_f32(random_values(hidden, rng_), {hidden});
      Tensor dw = up(w);
      Tensor ref = Tensor::empty(DType::f32, {n, hidden});

      cpu_.rmsnorm(x, w, 1e-5f, ref);
      Tensor out = poisoned(DType::bf16, {n, hidden});
      gpu_->rmsnorm(up(x), dw, 1e-5f, out);
      expect_bf16_near(out, ref, "rmsnorm" + where);

      for (int64_t shift : {0, 1}) {
        Tensor residual_ref = x.clone();
        cpu_.add_rmsnorm(residual_ref, y, w, 1e-5f, ref);
        Tensor residual = up(x);
        Tensor out_rows = poisoned(DType::bf16, {n + shift, hidden});
        Tensor shifted = out_rows.rows(shift, n);
        gpu_->add_rmsnorm(residual, up(y), dw, 1e-5f, shifted);
        expect_bf16_near(shifted, ref, "add_rmsnorm shift " + std::to_string(shift) + where);
        // residual + x is one fp32 addition on both sides: identical.
        const auto residual_gpu = down(residual), residual_cpu = residual_ref.to_f32_vector();
        EXPECT_TRUE(residual_gpu == residual_cpu) << "add_rmsnorm residual" << where;
      }

      Tensor gate_up = Tensor::from_f32(random_values(n * 2 * hidden, rng_), {n, 2 * hidden});
      cpu_.silu_and_mul_packed(gate_up, ref);
      out = poisoned(DType::bf16, {n, hidden});
      gpu_->silu_and_mul_packed(up(gate_up), out);
      expect_bf16_near(out, ref, "silu_and_mul_packed" + where);
      EXPECT_EQ(gpu_->take_error(), "") << where;
    }
  }
}

// bf16 rows are copied bit for bit.
TEST_F(CudaBackendBf16Inputs, GatherRowsCopiesBf16Bits) {
  for (int64_t n : {1, 19, 99, 989}) {
    for (int64_t dim : {1001, 4096}) {
      Tensor x = host_bf16(random_values(n * dim, rng_), {n, dim});
      std::vector<int32_t> rows;
      for (int64_t i = n - 1; i >= 0; i -= 3) rows.push_back(int32_t(i));
      rows.push_back(0);
      const int64_t num_rows = int64_t(rows.size());
      Tensor out = poisoned(DType::bf16, {num_rows, dim});
      gpu_->gather_rows(up(x), rows, out);
      Tensor got = gpu_->to_host(out);
      ASSERT_EQ(got.dtype(), DType::bf16);
      for (int64_t r = 0; r < num_rows; ++r) {
        const uint16_t* want = x.data<uint16_t>() + int64_t(rows[size_t(r)]) * dim;
        EXPECT_EQ(std::memcmp(got.data<uint16_t>() + r * dim, want, size_t(dim) * 2), 0)
            << "gather_rows n=" << n << " dim=" << dim << " row " << r;
      }
    }
  }
}

// linear with bf16 x against linear with fp32 x holding the same (bf16-representable) values: the
// GEMV runs the same fmaf sequence on the same numbers (bit-identical); cuBLAS gets the same bf16
// inputs either way (the fp32 path converts them exactly). Against an fp64 sum only summation
// rounding remains: the GEMV within 1e-4 of sum |x * w| (as in CudaBackendGemv); cuBLAS, whose
// tensor-core accumulation order is not ours to know, within 1e-3 (4104 terms x 2^-23 = 5e-4 is
// the worst case even for truncating fp32 adds).
TEST_F(CudaBackendBf16Inputs, LinearReadsBf16ActivationsOnBothPaths) {
  for (int64_t n : {1, 3, 8, 9, 99}) {
    for (int64_t in_features : {99, 1000, 4096 + 8}) {
      for (int64_t out_features : {7, 989}) {
        const std::string where =
            " n=" + std::to_string(n) + " in=" + std::to_string(in_features) + " out=" + std::to_string(out_features);
        std::vector<float> x = random_values(n * in_features, rng_);
        std::vector<float> w = random_values(out_features * in_features, rng_);
        for (auto& v : x) v = round_bf16(v);
        for (auto& v : w) v = round_bf16(v);
        const std::vector<float> b = random_values(out_features, rng_);
        std::vector<uint16_t> w_bits(w.size());
        for (size_t i = 0; i < w.size(); ++i) w_bits[i] = f32_to_bf16(w[i]);
        std::vector<double> ref(size_t(n * out_features)), abs_sum(ref.size());
        gemv_bf16_ref(x.data(), w_bits.data(), b.data(), ref.data(), abs_sum.data(), n, out_features, in_features);

        Tensor dw = gpu_->upload_weight(Tensor::from_f32(w, {out_features, in_features})).value();
        ASSERT_EQ(dw.dtype(), DType::bf16);
        Tensor db = gpu_->upload_weight(Tensor::from_f32(b, {out_features})).value();
        Tensor out16 = poisoned(DType::f32, {n, out_features}), out32 = poisoned(DType::f32, {n, out_features});
        gpu_->linear(up(host_bf16(x, {n, in_features})), dw, db, out16);
        gpu_->linear(up(Tensor::from_f32(x, {n, in_features})), dw, db, out32);
        EXPECT_EQ(gpu_->take_error(), "") << where;
        const auto from16 = down(out16), from32 = down(out32);
        double worst = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
          if (!std::isfinite(from16[i])) {
            worst = INFINITY;
            break;
          }
          worst = std::max(worst, std::fabs(double(from16[i]) - ref[i]) / std::max(abs_sum[i], 1e-30));
        }
        const double tolerance = n <= kGemvMaxTokens ? 1e-4 : 1e-3;
        EXPECT_LE(worst, tolerance) << "bf16 x vs fp64" << where;
        if (n <= kGemvMaxTokens) {
          EXPECT_TRUE(from16 == from32) << "GEMV bf16 x vs fp32 x" << where;
        } else {
          double diff = 0;
          for (size_t i = 0; i < ref.size(); ++i)
            diff = std::max(diff, std::fabs(double(from16[i]) - from32[i]) / std::max(abs_sum[i], 1e-30));
          EXPECT_LE(diff, tolerance) << "cuBLAS bf16 x vs fp32 x" << where;
        }
      }
    }
  }
}

TEST_F(CudaBackendBf16Inputs, Bf16ActivationsWithAnFp32WeightAreAnError) {
  Tensor w = gpu_->empty(DType::f32, {7, 16});
  Tensor x = poisoned(DType::bf16, {2, 16}), out = gpu_->empty(DType::f32, {2, 7});
  gpu_->linear(x, w, Tensor(), out);
  EXPECT_NE(gpu_->take_error().find("bf16 activations need a bf16 weight"), std::string::npos);
}

// The launcher with bf16 x: decode shapes, x off 16-byte alignment (the scalar path), bad sizes.
TEST(GemvKernelBf16X, DecodeShapesMisalignedActivationsAndBadSizes) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(77);
  struct Case {
    int64_t n, out_features, in_features, x_shift;  // shift in elements
  };
  const std::vector<Case> cases = {{1, 1024, 4096, 0}, {8, 1024, 4096, 0}, {2, 130, 14336, 0},
                                   {5, 989, 1024, 1},  {3, 33, 72, 4},     {7, 7, 99, 0}};
  for (const Case& c : cases) {
    std::vector<float> x = random_values(c.n * c.in_features, rng);
    const std::vector<float> w = random_values(c.out_features * c.in_features, rng);
    std::vector<uint16_t> x_bits(x.size()), w_bits(w.size());
    for (size_t i = 0; i < x.size(); ++i) x_bits[i] = f32_to_bf16(x[i]), x[i] = bf16_to_f32(x_bits[i]);
    for (size_t i = 0; i < w.size(); ++i) w_bits[i] = f32_to_bf16(w[i]);
    std::vector<double> ref(size_t(c.n * c.out_features)), abs_sum(ref.size());
    gemv_bf16_ref(x.data(), w_bits.data(), nullptr, ref.data(), abs_sum.data(), c.n, c.out_features, c.in_features);

    uint16_t *dx = nullptr, *dw = nullptr;
    float* dout = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dx), (x.size() + 8) * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dw), w.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dout), ref.size() * 4), cudaSuccess);
    cudaMemcpy(dx + c.x_shift, x_bits.data(), x_bits.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dw, w_bits.data(), w_bits.size() * 2, cudaMemcpyHostToDevice);
    cudaMemset(dout, 0xff, ref.size() * 4);  // NaN poison
    EXPECT_EQ(launch_gemv_bf16_x16(dx + c.x_shift, dw, nullptr, dout, c.n, c.out_features, c.in_features, nullptr),
              cudaSuccess);
    std::vector<float> actual(ref.size());
    EXPECT_EQ(cudaMemcpy(actual.data(), dout, actual.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dout);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      worst = std::isfinite(actual[i]) ? std::max(worst, std::fabs(actual[i] - ref[i]) / std::max(abs_sum[i], 1e-30))
                                       : INFINITY;
    EXPECT_LE(worst, 1e-4) << "n=" << c.n << " out=" << c.out_features << " in=" << c.in_features << " x shift "
                           << c.x_shift;
  }
  uint16_t* some = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&some), 1024), cudaSuccess);
  float* out = reinterpret_cast<float*>(some + 256);
  EXPECT_EQ(launch_gemv_bf16_x16(some, some, nullptr, out, 0, 4, 4, nullptr), cudaSuccess);
  EXPECT_EQ(launch_gemv_bf16_x16(some, some, nullptr, out, 9, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(some, some, nullptr, out, 1, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(nullptr, some, nullptr, out, 1, 4, 4, nullptr), cudaErrorInvalidValue);
  cudaFree(some);
}

}  // namespace
}  // namespace troupe::cuda

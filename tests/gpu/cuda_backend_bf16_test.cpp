// The CUDA backend's bf16 product inputs (matmul_input_dtype): the dtype follows the weights, and
// linear reads bf16 x (GEMV at n <= 8, cuBLAS above) as it reads the same values in fp32. The
// kernels writing bf16 (rmsnorm, add_rmsnorm, silu_and_mul_packed, gather_rows) are in the op table
// (backend_ops_test.cpp).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backends/cuda/cuda_backend.hpp"
#include "kernels/gemv.hpp"
#include "backends/cpu_backend.hpp"
#include "runtime/dtype.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
using namespace kernels;
namespace {

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

}  // namespace
}  // namespace troupe::cuda
// Backend::linear_fp8_block on the CPU: CpuBackend's blockwise dequantizing product and the
// Backend default (host dequantization + linear) both match dequantize_fp8_block + linear, on
// partial 128-blocks in both dimensions, one token, and K = 128; upload_fp8_weight keeps the bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "runtime/fp8_block.hpp"

namespace troupe {
namespace {

struct Case {
  int64_t n, out, in;
};

Tensor fp8_weight(int64_t out, int64_t in, std::mt19937& rng) {
  Tensor w = Tensor::empty(DType::f8_e4m3, {out, in});
  uint8_t* bits = w.data<uint8_t>();
  for (int64_t i = 0; i < out * in; ++i) bits[i] = uint8_t(rng()) & 0xf7;  // never S.1111.111 (NaN)
  return w;
}

TensorView view(const Tensor& t, const char* name) {
  return TensorView{name, "test", t.dtype(), t.shape(), t.raw(), t.nbytes()};
}

TEST(Fp8Linear, CpuMatchesDequantizedLinear) {
  CpuBackend backend(2);
  std::mt19937 rng(5);
  for (const Case& c : {Case{3, 200, 328}, Case{1, 128, 128}, Case{5, 130, 384}, Case{2, 7, 99}}) {
    SCOPED_TRACE("n=" + std::to_string(c.n) + " out=" + std::to_string(c.out) + " in=" + std::to_string(c.in));
    const Tensor w = fp8_weight(c.out, c.in, rng);
    const std::vector<int64_t> scale_shape = fp8_scale_shape(w.shape(), 128, 128);
    std::vector<float> scale_values(size_t(scale_shape[0] * scale_shape[1]));
    std::uniform_real_distribution<float> u(-12.0f, -6.0f);
    for (float& s : scale_values) s = std::exp2(u(rng));
    const Tensor scale = Tensor::from_f32(scale_values, scale_shape);
    std::vector<float> x_values(size_t(c.n * c.in));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x_values) v = normal(rng);
    const Tensor x = Tensor::from_f32(x_values, {c.n, c.in});

    Result<Tensor> dense = dequantize_fp8_block(view(w, "w"), view(scale, "s"), 128, 128);
    ASSERT_TRUE(dense.ok()) << dense.error().message;
    Tensor expected = Tensor::empty(DType::f32, {c.n, c.out});
    backend.linear(x, dense.value(), Tensor(), expected);

    Result<Tensor> dw = backend.upload_fp8_weight(w);
    Result<Tensor> ds = backend.upload_fp8_weight(scale);
    ASSERT_TRUE(dw.ok() && ds.ok());
    EXPECT_EQ(dw.value().dtype(), DType::f8_e4m3);
    Tensor actual = Tensor::empty(DType::f32, {c.n, c.out});
    backend.linear_fp8_block(x, dw.value(), ds.value(), actual);
    Tensor fallback = Tensor::empty(DType::f32, {c.n, c.out});
    backend.Backend::linear_fp8_block(x, dw.value(), ds.value(), fallback);

    const std::vector<float> e = expected.to_f32_vector(), a = actual.to_f32_vector(), f = fallback.to_f32_vector();
    for (size_t i = 0; i < e.size(); ++i) {
      const float tol = 1e-5f * (1.0f + std::fabs(e[i]));  // sgemm blockings may differ in order
      ASSERT_NEAR(a[i], e[i], tol) << "cpu override, element " << i;
      ASSERT_NEAR(f[i], e[i], tol) << "backend default, element " << i;
    }
  }
}

TEST(Fp8Linear, UploadRefusesOtherDtypes) {
  CpuBackend backend(1);
  EXPECT_FALSE(backend.upload_fp8_weight(Tensor::empty(DType::bf16, {2, 2})).ok());
}

}  // namespace
}  // namespace troupe

// Fused projections: load_fused_weight concatenates checkpoint tensors row-wise (dtype rules,
// errors naming the tensor), and silu_and_mul_packed over [n, 2 * I] matches silu_and_mul over
// the two halves (the CPU override and the Backend default).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "models/attention.hpp"
#include "backends/cpu_backend.hpp"
#include "tests/unit/tiny_model_support.hpp"

namespace troupe {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

Tensor to_bf16(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = Tensor::empty(DType::bf16, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<uint16_t>()[i] = f32_to_bf16(values[i]);
  return t;
}

TEST(FusedWeight, ConcatenatesRowsInOrder) {
  CpuBackend backend(2);
  const auto a = random_values(3 * 5, 1), b = random_values(2 * 5, 2), c = random_values(4 * 5, 3);
  const std::map<std::string, Tensor> weights = {{"a", Tensor::from_f32(a, {3, 5})},
                                                 {"b", Tensor::from_f32(b, {2, 5})},
                                                 {"c", Tensor::from_f32(c, {4, 5})}};
  auto fused = load_fused_weight(testing::map_loader(weights, nullptr), backend,
                                 {{"a", {3, 5}}, {"b", {2, 5}}, {"c", {4, 5}}});
  ASSERT_TRUE(fused.ok()) << fused.error().message;
  ASSERT_EQ(fused->shape(), (std::vector<int64_t>{9, 5}));
  std::vector<float> expected = a;
  expected.insert(expected.end(), b.begin(), b.end());
  expected.insert(expected.end(), c.begin(), c.end());
  EXPECT_EQ(fused->to_f32_vector(), expected);
}

TEST(FusedWeight, MixedDtypesAreWidenedExactly) {
  CpuBackend backend(2, /*keep_bf16_weights=*/true);
  const auto a = random_values(6, 4), b = random_values(4, 5), c = random_values(6, 6);
  const Tensor a16 = to_bf16(a, {6}), c16 = to_bf16(c, {3, 2});
  // Same dtype (bf16) stays bf16 on a backend keeping bf16 matrices.
  const std::map<std::string, Tensor> same = {{"x", to_bf16(a, {3, 2})}, {"y", c16}};
  auto kept = load_fused_weight(testing::map_loader(same, nullptr), backend, {{"x", {3, 2}}, {"y", {3, 2}}});
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  EXPECT_EQ(kept->dtype(), DType::bf16);
  // bf16 then f32 then bf16: widened to f32, each value exactly its part's.
  const std::map<std::string, Tensor> mixed = {{"a", a16}, {"b", Tensor::from_f32(b, {4})}, {"c", c16.reshape({6})}};
  auto fused = load_fused_weight(testing::map_loader(mixed, nullptr), backend, {{"a", {6}}, {"b", {4}}, {"c", {6}}});
  ASSERT_TRUE(fused.ok()) << fused.error().message;
  ASSERT_EQ(fused->dtype(), DType::f32);
  std::vector<float> expected = a16.to_f32_vector();
  expected.insert(expected.end(), b.begin(), b.end());
  const auto c_back = c16.to_f32_vector();
  expected.insert(expected.end(), c_back.begin(), c_back.end());
  EXPECT_EQ(fused->to_f32_vector(), expected);
}

TEST(FusedWeight, ErrorsNameTheTensor) {
  CpuBackend backend(2);
  const std::map<std::string, Tensor> weights = {{"p.q", Tensor::zeros(DType::f32, {2, 3})},
                                                 {"p.ids", Tensor::zeros(DType::i32, {2, 3})}};
  const WeightLoader loader = testing::map_loader(weights, nullptr);
  auto missing = load_fused_weight(loader, backend, {{"p.q", {2, 3}}, {"p.k", {2, 3}}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("p.k"), std::string::npos) << missing.error().message;
  auto bad_shape = load_fused_weight(loader, backend, {{"p.q", {2, 3}}, {"p.k", {2, 4}}});
  ASSERT_FALSE(bad_shape.ok());
  EXPECT_NE(bad_shape.error().message.find("p.k"), std::string::npos) << bad_shape.error().message;
  auto not_float = load_fused_weight(loader, backend, {{"p.q", {2, 3}}, {"p.ids", {2, 3}}});
  ASSERT_FALSE(not_float.ok());
  EXPECT_NE(not_float.error().message.find("p.ids"), std::string::npos) << not_float.error().message;
  EXPECT_FALSE(load_fused_weight(loader, backend, {}).ok());
}

TEST(FusedWeight, SiluAndMulPackedMatchesTheHalves) {
  CpuBackend backend(2);
  for (int64_t n : {1, 3, 19}) {
    for (int64_t inter : {1, 7, 111, 20000}) {
      const auto gu = random_values(size_t(n * 2 * inter), uint32_t(n * 1000 + inter));
      std::vector<float> gate, up;
      for (int64_t t = 0; t < n; ++t) {
        gate.insert(gate.end(), gu.begin() + t * 2 * inter, gu.begin() + t * 2 * inter + inter);
        up.insert(up.end(), gu.begin() + t * 2 * inter + inter, gu.begin() + (t + 1) * 2 * inter);
      }
      Tensor ref = backend.empty(DType::f32, {n, inter});
      backend.silu_and_mul(Tensor::from_f32(gate, {n, inter}), Tensor::from_f32(up, {n, inter}), ref);
      const Tensor packed = Tensor::from_f32(gu, {n, 2 * inter});
      Tensor out = Tensor::from_f32(std::vector<float>(size_t(n * inter), NAN), {n, inter});
      backend.silu_and_mul_packed(packed, out);
      Tensor by_rows = Tensor::from_f32(std::vector<float>(size_t(n * inter), NAN), {n, inter});
      backend.Backend::silu_and_mul_packed(packed, by_rows);  // the default: silu_and_mul per row
      const auto r = ref.to_f32_vector(), o = out.to_f32_vector(), d = by_rows.to_f32_vector();
      for (size_t i = 0; i < r.size(); ++i) {
        // Same formula in fp32 on both sides.
        ASSERT_NEAR(o[i], r[i], 1e-6f * (1.0f + std::fabs(r[i]))) << "n=" << n << " inter=" << inter << " i=" << i;
        ASSERT_NEAR(d[i], r[i], 1e-6f * (1.0f + std::fabs(r[i]))) << "n=" << n << " inter=" << inter << " i=" << i;
      }
    }
  }
}

}  // namespace
}  // namespace troupe

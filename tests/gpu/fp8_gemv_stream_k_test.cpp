// kernels/fp8_gemv_f16's stream-K split: that the large decode shapes take it (on GPUs of 100 SMs or
// more, where their tiles do not divide the resident warps) and that it repeats bit for bit, launch
// after launch and with other stream-K launches between, so the cut tiles' counters are back at zero
// after each launch and their sums are added in one order. The values themselves are the op table's
// (tests/gpu/backend_ops_fp8.cpp: the same shapes against the fp64 reference).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_quant.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

using kernels::fp8_gemv_f16_stream_k;

bool stream_k_off() {
  const char* env = std::getenv("TROUPE_F16_STREAM_K");
  return env && std::string(env) == "0";
}

int sm_count() {
  cudaDeviceProp prop{};
  return cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.multiProcessorCount : 0;
}

TEST(Fp8GemvStreamK, TakesTheLargeShapes) {
  TROUPE_REQUIRE_GPU();
  if (sm_count() < 100) GTEST_SKIP() << "the shapes below are chosen for 100 SMs or more";
  const bool on = !stream_k_off();
  EXPECT_EQ(fp8_gemv_f16_stream_k(1, 28672, 4096), on);   // Llama-3-8B gate_up
  EXPECT_EQ(fp8_gemv_f16_stream_k(2, 28672, 4096), on);
  EXPECT_EQ(fp8_gemv_f16_stream_k(3, 7176, 16384), on);   // R1's o, a last tile of 8 rows
  EXPECT_EQ(fp8_gemv_f16_stream_k(2, 16904, 4096), on);   // the op table's split row
  EXPECT_FALSE(fp8_gemv_f16_stream_k(1, 4096, 4096));     // Llama's o: the shared plan is as even
  EXPECT_FALSE(fp8_gemv_f16_stream_k(1, 1536, 7168));     // too few K blocks a warp
  EXPECT_FALSE(fp8_gemv_f16_stream_k(9, 28672, 4096));    // past the kernel's tokens
  EXPECT_FALSE(fp8_gemv_f16_stream_k(8, 7168, 16384));    // x does not fit the staging
}

struct Product {
  int64_t m, n, k;
  uint16_t* x = nullptr;
  uint8_t* w = nullptr;
  float* scale = nullptr;
};

Product make_product(int64_t m, int64_t n, int64_t k, std::mt19937& rng) {
  Product p{m, n, k};
  std::vector<uint8_t> w(size_t(n * k));
  for (auto& b : w) {
    b = uint8_t(rng());
    if ((b & 0x7f) == 0x7f) b ^= 1;  // no e4m3 NaN
  }
  std::vector<float> scale(size_t(kernels::fp8_num_blocks(n) * kernels::fp8_num_blocks(k)));
  std::uniform_real_distribution<float> u(0.5f, 2.0f);
  for (auto& s : scale) s = u(rng) / 256.0f;
  std::vector<uint16_t> x(size_t(m * k));
  for (auto& v : x) v = uint16_t(0x3c00 + (rng() % 0x400)) ^ uint16_t((rng() & 1) << 15);  // bf16 in +-[1, 2)
  EXPECT_EQ(cudaMalloc(&p.x, x.size() * 2), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p.w, w.size()), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p.scale, scale.size() * 4), cudaSuccess);
  cudaMemcpy(p.x, x.data(), x.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(p.w, w.data(), w.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(p.scale, scale.data(), scale.size() * 4, cudaMemcpyHostToDevice);
  return p;
}

std::vector<float> run(const Product& p, float* out) {
  cudaMemset(out, 0xff, size_t(p.m * p.n) * 4);
  EXPECT_EQ(kernels::launch_fp8_gemv_f16(p.x, p.w, p.scale, out, p.m, p.n, p.k, nullptr), cudaSuccess);
  std::vector<float> host(size_t(p.m * p.n));
  EXPECT_EQ(cudaMemcpy(host.data(), out, host.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

TEST(Fp8GemvStreamK, RepeatsBitForBit) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(31);
  const Product a = make_product(1, 28672, 4096, rng), b = make_product(3, 7176, 16384, rng);
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, size_t(3 * 28672) * 4), cudaSuccess);
  const std::vector<float> a1 = run(a, out), b1 = run(b, out), a2 = run(a, out);
  const std::vector<float> b2 = run(b, out), b3 = run(b, out);
  for (const auto* v : {&a1, &b1})
    for (float f : *v) ASSERT_TRUE(std::isfinite(f));  // every output written (the poison is NaN)
  EXPECT_EQ(std::memcmp(a1.data(), a2.data(), a1.size() * 4), 0);
  EXPECT_EQ(std::memcmp(b1.data(), b2.data(), b1.size() * 4), 0);
  EXPECT_EQ(std::memcmp(b1.data(), b3.data(), b1.size() * 4), 0);
  for (const Product& p : {a, b}) {
    cudaFree(p.x);
    cudaFree(p.w);
    cudaFree(p.scale);
  }
  cudaFree(out);
}

}  // namespace
}  // namespace troupe

// CudaBackend::pack_moe_experts + moe_experts (the grouped FP8 experts of decode batches, no host
// sync) against a CPU reference of the whole routed half of the MoE layer: per token,
//   out[t] = shared[t] + sum_i w[t, i] * down_e(bf16(silu(g) * u)),  [g | u] = gate_up_e(bf16(x[t]))
// with e4m3 weights and 128 x 128 block scales, the experts' sums in fp64. Batches 1, 8, 64, 256;
// partial 128-blocks (hidden 320, inter 192); experts with no token; every token on the same
// experts; expert parallel (only the local experts added); the shared expert packed along (then
// out = shared(x) + routed, written rather than added). The one-token batches take the one-token
// launches (kernels/moe_rows_gemv; hidden and inter are multiples of 16). Tolerance: the device's act
// is rounded to bf16 from fp32 sums (the reference's from fp64 sums), so an act value may sit one
// bf16 ulp (2^-8 relative) away where a rounding boundary falls between: max |diff| <= 4e-3 of the
// largest |out - shared| bounds that with room (a wrong scale, token or expert is off by O(1)).
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>
#include <map>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_nccl_collective.hpp"
#include "models/moe.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_rows_gemv.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
namespace {

struct HostWeight {
  Tensor t;                  // host e4m3 with its block scale
  std::vector<float> dense;  // dequantized, [rows, cols]
};

HostWeight random_fp8(int64_t rows, int64_t cols, std::mt19937& rng) {
  const int64_t rb = (rows + 127) / 128, cb = (cols + 127) / 128;
  HostWeight h;
  h.t = Tensor::empty(DType::f8_e4m3, {rows, cols});
  auto* bytes = h.t.data<uint8_t>();
  std::normal_distribution<float> normal(0.0f, 64.0f);
  for (int64_t i = 0; i < rows * cols; ++i) bytes[i] = kernels::host_f32_to_e4m3(normal(rng));
  Tensor scale = Tensor::empty(DType::f32, {rb, cb});
  std::uniform_real_distribution<float> unit(0.5f / 1024, 2.0f / 1024);
  for (int64_t i = 0; i < rb * cb; ++i) scale.data<float>()[i] = unit(rng);
  h.dense.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      h.dense[size_t(r * cols + c)] =
          kernels::host_e4m3_to_f32(bytes[r * cols + c]) * scale.data<float>()[(r / 128) * cb + c / 128];
  h.t.set_block_scale(std::move(scale));
  return h;
}

struct Case {
  int64_t n;
  int32_t experts, k, begin, local;
  bool same_experts = false;  // every token routed to experts 0..k-1 (of the local ones)
  bool with_shared = false;   // the shared expert packed along
};

TEST(CudaMoeExperts, GroupedExpertsMatchTheReferenceOnDecodeBatches) {
  ::unsetenv("TROUPE_MOE_ROWS");  // the default: n == 1 on the one-token launches
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  constexpr int64_t kHidden = 320, kInter = 192;
  ASSERT_TRUE(kernels::moe_rows_supported(kHidden) && kernels::moe_rows_supported(kInter));
  std::mt19937 rng(21);
  constexpr int32_t kExperts = 32;
  std::vector<HostWeight> gate_up, down;
  std::vector<Tensor> dev_gate_up, dev_down;
  for (int32_t e = 0; e < kExperts; ++e) {
    gate_up.push_back(random_fp8(2 * kInter, kHidden, rng));
    down.push_back(random_fp8(kHidden, kInter, rng));
    auto gu = gpu.upload_weight(gate_up.back().t);
    auto dn = gpu.upload_weight(down.back().t);
    ASSERT_TRUE(gu.ok() && dn.ok());
    dev_gate_up.push_back(gu.value());
    dev_down.push_back(dn.value());
  }
  const HostWeight shared_gate_up = random_fp8(2 * kInter, kHidden, rng), shared_down = random_fp8(kHidden, kInter, rng);
  auto dev_shared_gate_up = gpu.upload_weight(shared_gate_up.t), dev_shared_down = gpu.upload_weight(shared_down.t);
  ASSERT_TRUE(dev_shared_gate_up.ok() && dev_shared_down.ok());
  const Case cases[] = {{1, 32, 8, 0, 32},          {8, 32, 8, 0, 32},         {64, 32, 8, 0, 32},
                        {256, 32, 8, 0, 32},        {3, 32, 4, 16, 16},        {64, 32, 8, 8, 16},
                        {64, 32, 8, 0, 32, true},   {1, 32, 2, 0, 32},         {1, 32, 8, 0, 32, false, true},
                        {64, 32, 8, 0, 32, false, true}, {256, 32, 8, 0, 32, false, true}, {8, 32, 8, 8, 16, false, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE("n " + std::to_string(c.n) + " k " + std::to_string(c.k) + " local [" + std::to_string(c.begin) +
                 ", " + std::to_string(c.begin + c.local) + ")" + (c.same_experts ? " same experts" : "") +
                 (c.with_shared ? " with shared" : ""));
    auto packed = gpu.pack_moe_experts(
        std::vector<Tensor>(dev_gate_up.begin() + c.begin, dev_gate_up.begin() + c.begin + c.local),
        std::vector<Tensor>(dev_down.begin() + c.begin, dev_down.begin() + c.begin + c.local),
        c.with_shared ? dev_shared_gate_up.value() : Tensor(), c.with_shared ? dev_shared_down.value() : Tensor());
    ASSERT_TRUE(packed.ok()) << packed.error().message;
    ASSERT_EQ(packed->has_shared, c.with_shared);
    // Inputs: bf16 x, k distinct experts per token, weights, the shared result.
    Tensor x = Tensor::empty(DType::bf16, {c.n, kHidden});
    std::vector<float> xf(size_t(c.n * kHidden));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t i = 0; i < xf.size(); ++i) {
      x.data<uint16_t>()[i] = kernels::host_f32_to_bf16(normal(rng));
      xf[i] = kernels::host_bf16_to_f32(x.data<uint16_t>()[i]);
    }
    std::vector<int32_t> ids(size_t(c.n * c.k)), perm(size_t(c.experts));
    std::vector<float> weights(ids.size()), shared(size_t(c.n * kHidden));
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t t = 0; t < c.n; ++t) {
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int32_t i = 0; i < c.k; ++i) ids[size_t(t * c.k + i)] = c.same_experts ? i : perm[size_t(i)];
    }
    std::uniform_real_distribution<float> wdist(0.1f, 1.0f);
    for (auto& w : weights) w = wdist(rng);
    for (auto& s : shared) s = normal(rng);
    Tensor d_ids = gpu.empty(DType::i32, {c.n, c.k}), d_weights = gpu.empty(DType::f32, {c.n, c.k});
    Tensor out = gpu.empty(DType::f32, {c.n, kHidden});
    gpu.copy(Tensor::from_i32(ids, {c.n, c.k}), d_ids);
    gpu.copy(Tensor::from_f32(weights, {c.n, c.k}), d_weights);
    gpu.copy(Tensor::from_f32(shared, {c.n, kHidden}), out);
    ASSERT_TRUE(gpu.moe_experts(x, d_ids, d_weights, packed.value(), c.begin, c.experts, out));
    const Tensor got = gpu.to_host(out);
    ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;

    double max_routed = 0, max_diff = 0;
    std::vector<double> gu(size_t(2 * kInter));
    std::vector<float> act(static_cast<size_t>(kInter));
    for (int64_t t = 0; t < c.n; ++t) {
      std::vector<double> want(size_t(kHidden), 0.0);
      for (int32_t i = 0; i < c.k + (c.with_shared ? 1 : 0); ++i) {
        const bool is_shared = i == c.k;
        const int32_t e = is_shared ? -1 : ids[size_t(t * c.k + i)];
        if (!is_shared && (e < c.begin || e >= c.begin + c.local)) continue;  // another rank's expert
        const std::vector<float>& wgu = is_shared ? shared_gate_up.dense : gate_up[size_t(e)].dense;
        const std::vector<float>& wdn = is_shared ? shared_down.dense : down[size_t(e)].dense;
        const double weight = is_shared ? 1.0 : double(weights[size_t(t * c.k + i)]);
        for (int64_t r = 0; r < 2 * kInter; ++r) {
          double s = 0;
          for (int64_t j = 0; j < kHidden; ++j) s += double(xf[size_t(t * kHidden + j)]) * wgu[size_t(r * kHidden + j)];
          gu[size_t(r)] = s;
        }
        for (int64_t j = 0; j < kInter; ++j) {
          const double g = gu[size_t(j)], u = gu[size_t(kInter + j)];
          act[size_t(j)] = kernels::host_bf16_to_f32(kernels::host_f32_to_bf16(float(g / (1.0 + std::exp(-g)) * u)));
        }
        for (int64_t r = 0; r < kHidden; ++r) {
          double s = 0;
          for (int64_t j = 0; j < kInter; ++j) s += double(act[size_t(j)]) * wdn[size_t(r * kInter + j)];
          want[size_t(r)] += weight * s;
        }
      }
      for (int64_t r = 0; r < kHidden; ++r) {
        max_routed = std::max(max_routed, std::abs(want[size_t(r)]));
        const double expected = (c.with_shared ? 0.0 : double(shared[size_t(t * kHidden + r)])) + want[size_t(r)];
        max_diff = std::max(max_diff, std::abs(expected - double(got.data<float>()[t * kHidden + r])));
      }
    }
    EXPECT_GT(max_routed, 0.1);  // the experts added something
    EXPECT_LE(max_diff, 4e-3 * max_routed);
    std::printf("n %lld k %d local %d: max |routed| %.3g, max |diff| %.3g (%.2e of it)\n", (long long)c.n, c.k,
                c.local, max_routed, max_diff, max_diff / max_routed);
  }
}

// One FP8 expert (or dense MLP) on one token as the prefill paths compute it: x quantized per 128
// channels (fp8_quant_ref), the gate_up product in fp64 rounded to bf16, bf16(silu(g) * u)
// quantized, the down product in fp64 rounded to bf16. y: [hidden].
void quantized_mlp_ref(const float* x, const HostWeight& gate_up, const HostWeight& down, int64_t hidden,
                       int64_t inter, std::vector<double>& y) {
  const int64_t xb = kernels::fp8_num_blocks(hidden), ab = kernels::fp8_num_blocks(inter);
  std::vector<uint8_t> q(static_cast<size_t>(std::max(hidden, inter)));
  std::vector<float> qs(static_cast<size_t>(std::max(xb, ab))), xq(static_cast<size_t>(hidden));
  std::vector<float> act(static_cast<size_t>(inter)), actq(static_cast<size_t>(inter));
  std::vector<uint16_t> h(static_cast<size_t>(2 * inter));
  kernels::fp8_quant_ref(x, q.data(), qs.data(), 1, hidden);
  for (int64_t j = 0; j < hidden; ++j) xq[size_t(j)] = kernels::host_e4m3_to_f32(q[size_t(j)]) * qs[size_t(j / 128)];
  for (int64_t r = 0; r < 2 * inter; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < hidden; ++j) sum += double(xq[size_t(j)]) * gate_up.dense[size_t(r * hidden + j)];
    h[size_t(r)] = kernels::host_f32_to_bf16(float(sum));
  }
  for (int64_t j = 0; j < inter; ++j) {
    const float g = kernels::host_bf16_to_f32(h[size_t(j)]), u = kernels::host_bf16_to_f32(h[size_t(inter + j)]);
    act[size_t(j)] = kernels::host_bf16_to_f32(kernels::host_f32_to_bf16(g / (1.0f + std::exp(-g)) * u));
  }
  kernels::fp8_quant_ref(act.data(), q.data(), qs.data(), 1, inter);
  for (int64_t j = 0; j < inter; ++j) actq[size_t(j)] = kernels::host_e4m3_to_f32(q[size_t(j)]) * qs[size_t(j / 128)];
  y.assign(size_t(hidden), 0.0);
  for (int64_t r = 0; r < hidden; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < inter; ++j) sum += double(actq[size_t(j)]) * down.dense[size_t(r * inter + j)];
    y[size_t(r)] = double(kernels::host_bf16_to_f32(kernels::host_f32_to_bf16(float(sum))));
  }
}

// Prefill-sized batches (more than kMoeExpertsMaxTokens tokens) take moe_experts_prefill: x and the
// activations quantized per token and 128 channels (kernels/moe_segment_quant), one FP8 block GEMM
// per expert with rows, bf16 gate_up and down outputs, the combine. The reference does the same
// roundings on the host (fp8_quant_ref, bf16 of the products computed in fp64): what remains is a
// product sitting at a bf16 rounding boundary, and then an act value one e4m3 step (2^-3 relative)
// away, and the GEMM's own accumulation: the own kernel stays within 8e-3 of max |routed| on the
// H200, cuBLASLt's block-scaled kernels at these short m (~150 rows an expert; 100 in the dense test
// below) were measured up to 1.4e-2. Bound: 3e-2 of max |routed| (a wrong segment, token or expert is
// off by O(1), a wrong 128-block scale by up to 4x on its block's share).
// Shapes: hidden 320, inter 192 (partial 128-blocks: the own GEMM kernel) and hidden 512, inter 512
// (cuBLASLt's block-scaled GEMM); experts with no token, every token on the same experts, expert
// parallel, the shared expert along.
TEST(CudaMoeExperts, GroupedExpertsMatchTheReferenceOnPrefillBatches) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  std::mt19937 rng(77);
  constexpr int32_t kExperts = 32;
  struct Shape {
    int64_t hidden, inter;
  };
  for (const Shape shape : {Shape{320, 192}, Shape{512, 512}}) {
    const int64_t hidden = shape.hidden, inter = shape.inter;
    std::vector<HostWeight> gate_up, down;
    std::vector<Tensor> dev_gate_up, dev_down;
    for (int32_t e = 0; e <= kExperts; ++e) {  // the last one: the shared expert
      gate_up.push_back(random_fp8(2 * inter, hidden, rng));
      down.push_back(random_fp8(hidden, inter, rng));
      auto gu = gpu.upload_weight(gate_up.back().t);
      auto dn = gpu.upload_weight(down.back().t);
      ASSERT_TRUE(gu.ok() && dn.ok());
      dev_gate_up.push_back(gu.value());
      dev_down.push_back(dn.value());
    }
    const Case cases[] = {{600, 32, 8, 0, 32}, {600, 32, 8, 8, 16}, {600, 32, 4, 0, 32, true},
                          {600, 32, 8, 0, 32, false, true}};
    for (const Case& c : cases) {
      SCOPED_TRACE("hidden " + std::to_string(hidden) + " inter " + std::to_string(inter) + " n " +
                   std::to_string(c.n) + " k " + std::to_string(c.k) + " local [" + std::to_string(c.begin) + ", " +
                   std::to_string(c.begin + c.local) + ")" + (c.same_experts ? " same experts" : "") +
                   (c.with_shared ? " with shared" : ""));
      ASSERT_GT(c.n, CudaBackend::kMoeExpertsMaxTokens);
      auto packed = gpu.pack_moe_experts(
          std::vector<Tensor>(dev_gate_up.begin() + c.begin, dev_gate_up.begin() + c.begin + c.local),
          std::vector<Tensor>(dev_down.begin() + c.begin, dev_down.begin() + c.begin + c.local),
          c.with_shared ? dev_gate_up[kExperts] : Tensor(), c.with_shared ? dev_down[kExperts] : Tensor());
      ASSERT_TRUE(packed.ok()) << packed.error().message;
      ASSERT_EQ(packed->has_shared, c.with_shared);
      Tensor x = Tensor::empty(DType::bf16, {c.n, hidden});
      std::vector<float> xf(size_t(c.n * hidden));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (size_t i = 0; i < xf.size(); ++i) {
        x.data<uint16_t>()[i] = kernels::host_f32_to_bf16(normal(rng));
        xf[i] = kernels::host_bf16_to_f32(x.data<uint16_t>()[i]);
      }
      std::vector<int32_t> ids(size_t(c.n * c.k)), perm(size_t(c.experts));
      std::vector<float> weights(ids.size()), shared(size_t(c.n * hidden));
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t t = 0; t < c.n; ++t) {
        std::shuffle(perm.begin(), perm.end(), rng);
        for (int32_t i = 0; i < c.k; ++i) ids[size_t(t * c.k + i)] = c.same_experts ? i : perm[size_t(i)];
      }
      std::uniform_real_distribution<float> wdist(0.1f, 1.0f);
      for (auto& w : weights) w = wdist(rng);
      for (auto& v : shared) v = normal(rng);
      Tensor d_ids = gpu.empty(DType::i32, {c.n, c.k}), d_weights = gpu.empty(DType::f32, {c.n, c.k});
      Tensor out = gpu.empty(DType::f32, {c.n, hidden});
      gpu.copy(Tensor::from_i32(ids, {c.n, c.k}), d_ids);
      gpu.copy(Tensor::from_f32(weights, {c.n, c.k}), d_weights);
      gpu.copy(Tensor::from_f32(shared, {c.n, hidden}), out);
      ASSERT_TRUE(gpu.moe_experts(x, d_ids, d_weights, packed.value(), c.begin, c.experts, out));
      const Tensor got = gpu.to_host(out);
      ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;

      // The reference, token by token (quantized_mlp_ref), each expert's output weighted in fp64.
      double max_routed = 0, max_diff = 0;
      std::vector<double> y;
      for (int64_t t = 0; t < c.n; ++t) {
        std::vector<double> want(size_t(hidden), 0.0);
        for (int32_t i = 0; i < c.k + (c.with_shared ? 1 : 0); ++i) {
          const bool is_shared = i == c.k;
          const int32_t e = is_shared ? kExperts : ids[size_t(t * c.k + i)];
          if (!is_shared && (e < c.begin || e >= c.begin + c.local)) continue;  // another rank's expert
          const double weight = is_shared ? 1.0 : double(weights[size_t(t * c.k + i)]);
          quantized_mlp_ref(xf.data() + t * hidden, gate_up[size_t(e)], down[size_t(e)], hidden, inter, y);
          for (int64_t r = 0; r < hidden; ++r) want[size_t(r)] += weight * y[size_t(r)];
        }
        for (int64_t r = 0; r < hidden; ++r) {
          max_routed = std::max(max_routed, std::abs(want[size_t(r)]));
          const double expected = (c.with_shared ? 0.0 : double(shared[size_t(t * hidden + r)])) + want[size_t(r)];
          max_diff = std::max(max_diff, std::abs(expected - double(got.data<float>()[t * hidden + r])));
        }
      }
      EXPECT_GT(max_routed, 0.1);
      EXPECT_LE(max_diff, 3e-2 * max_routed);
      std::printf("prefill hidden %lld inter %lld n %lld k %d local %d%s: max |routed| %.3g, max |diff| %.3g (%.2e of it)\n",
                  (long long)hidden, (long long)inter, (long long)c.n, c.k, c.local, c.with_shared ? " +shared" : "",
                  max_routed, max_diff, max_diff / max_routed);
    }
  }
}

// A dense FP8 MLP at prefill sizes (CudaBackend::mlp_fp8_block: cuBLASLt's shapes, more than
// kFp8GemvMaxTokens tokens) against quantized_mlp_ref, bound as above (cuBLASLt measured 1.4e-2 of
// max |out| off at 100 tokens, 2.8e-4 at 257); 100 and 257 tokens, fp32 and bf16 x.
TEST(CudaMoeExperts, DenseFp8MlpAtPrefillSizesMatchesTheQuantizedReference) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  std::mt19937 rng(91);
  constexpr int64_t kHidden = 512, kInter = 1024;
  const HostWeight gate_up = random_fp8(2 * kInter, kHidden, rng), down = random_fp8(kHidden, kInter, rng);
  auto dgu = gpu.upload_weight(gate_up.t), ddn = gpu.upload_weight(down.t);
  ASSERT_TRUE(dgu.ok() && ddn.ok());
  for (const int64_t n : {100, 257}) {
    for (const bool bf16_x : {true, false}) {
      SCOPED_TRACE("n " + std::to_string(n) + (bf16_x ? " bf16 x" : " fp32 x"));
      std::vector<float> xf(size_t(n * kHidden));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (auto& v : xf) v = kernels::host_bf16_to_f32(kernels::host_f32_to_bf16(normal(rng)));
      Tensor x_host = Tensor::from_f32(xf, {n, kHidden});
      if (bf16_x) {
        x_host = Tensor::empty(DType::bf16, {n, kHidden});
        for (size_t i = 0; i < xf.size(); ++i) x_host.data<uint16_t>()[i] = kernels::host_f32_to_bf16(xf[i]);
      }
      Tensor x = gpu.empty(x_host.dtype(), {n, kHidden}), out = gpu.empty(DType::f32, {n, kHidden});
      gpu.copy(x_host, x);
      gpu.mlp(x, dgu.value(), Tensor(), ddn.value(), Tensor(), out);
      const Tensor got = gpu.to_host(out);
      ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;
      double max_out = 0, max_diff = 0;
      std::vector<double> y;
      for (int64_t t = 0; t < n; ++t) {
        quantized_mlp_ref(xf.data() + t * kHidden, gate_up, down, kHidden, kInter, y);
        for (int64_t r = 0; r < kHidden; ++r) {
          max_out = std::max(max_out, std::abs(y[size_t(r)]));
          max_diff = std::max(max_diff, std::abs(y[size_t(r)] - double(got.data<float>()[t * kHidden + r])));
        }
      }
      EXPECT_GT(max_out, 0.1);
      EXPECT_LE(max_diff, 3e-2 * max_out);
      std::printf("dense FP8 mlp n %lld%s: max |out| %.3g, max |diff| %.3g (%.2e of it)\n", (long long)n,
                  bf16_x ? " bf16 x" : " fp32 x", max_out, max_diff, max_diff / max_out);
    }
  }
}

// Weights the grouped paths cannot take are refused at packing (the model's loop runs them).
TEST(CudaMoeExperts, RefusesNonFp8Experts) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  std::mt19937 rng(5);
  HostWeight gu = random_fp8(256, 128, rng), dn = random_fp8(128, 128, rng);
  auto dgu = gpu.upload_weight(gu.t), ddn = gpu.upload_weight(dn.t);
  ASSERT_TRUE(dgu.ok() && ddn.ok());
  auto packed = gpu.pack_moe_experts({dgu.value()}, {ddn.value()}, Tensor(), Tensor());
  ASSERT_TRUE(packed.ok()) << packed.error().message;
  EXPECT_FALSE(packed->has_shared);
  // Shapes that do not agree (down [128, 64] with gate_up [256, 128]) and bf16 weights are refused.
  HostWeight bad = random_fp8(128, 64, rng);
  auto dbad = gpu.upload_weight(bad.t);
  ASSERT_TRUE(dbad.ok());
  EXPECT_FALSE(gpu.pack_moe_experts({dgu.value()}, {dbad.value()}, Tensor(), Tensor()).ok());
  // A shared expert of other shapes stays out of the table (the model runs it itself).
  auto without = gpu.pack_moe_experts({dgu.value()}, {ddn.value()}, dgu.value(), dbad.value());
  ASSERT_TRUE(without.ok());
  EXPECT_FALSE(without->has_shared);
  Tensor dense = Tensor::from_f32(std::vector<float>(256 * 128, 0.5f), {256, 128});
  auto ddense = gpu.upload_weight(dense);
  ASSERT_TRUE(ddense.ok());
  EXPECT_FALSE(gpu.pack_moe_experts({ddense.value()}, {ddn.value()}, Tensor(), Tensor()).ok());
  EXPECT_TRUE(gpu.status().ok());
}


// A MoE layer for the model-wiring tests below: 16 FP8 experts (top 4) and one shared expert,
// hidden 160, inter 256. The router's logits are spaced 0.8 apart per token (x's first E columns
// hold a permutation of ranks, the gate picks column e for expert e), so every backend chooses the
// same experts.
struct MoeLayerSetup {
  static constexpr int64_t kE = 16, kK = 4, kHidden = 160, kInter = 256;
  ModelConfig config;
  std::map<std::string, Tensor> tensors;
  const std::string prefix = "model.layers.1.mlp.";
  std::mt19937 rng{33};

  MoeLayerSetup() {
    config.hidden_size = kHidden;
    config.intermediate_size = 512;
    config.moe.n_routed_experts = kE;
    config.moe.n_shared_experts = 1;
    config.moe.num_experts_per_tok = kK;
    config.moe.moe_intermediate_size = kInter;
    config.moe.n_group = 4;
    config.moe.topk_group = 4;
    config.moe.routed_scaling_factor = 2.5;
    auto add_expert = [&](const std::string& name) {
      tensors[name + "gate_proj.weight"] = random_fp8(kInter, kHidden, rng).t;
      tensors[name + "up_proj.weight"] = random_fp8(kInter, kHidden, rng).t;
      tensors[name + "down_proj.weight"] = random_fp8(kHidden, kInter, rng).t;
    };
    for (int64_t e = 0; e < kE; ++e) add_expert(prefix + "experts." + std::to_string(e) + ".");
    add_expert(prefix + "shared_experts.");
    std::vector<float> gate(size_t(kE * kHidden), 0.0f);
    for (int64_t e = 0; e < kE; ++e) gate[size_t(e * kHidden + e)] = 1.0f;
    tensors[prefix + "gate.weight"] = Tensor::from_f32(gate, {kE, kHidden});
    tensors[prefix + "gate.e_score_correction_bias"] = Tensor::from_f32(std::vector<float>(kE, 0.0f), {kE});
  }

  WeightLoader loader() const {
    return [this](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
      auto it = tensors.find(name);
      if (it == tensors.end()) return make_error(ErrorCode::not_found, "no tensor " + name);
      if (it->second.shape() != shape) return make_error(ErrorCode::invalid_argument, "shape of " + name);
      return it->second;
    };
  }

  // n tokens of bf16 values: as a host bf16 tensor and widened to fp32.
  std::pair<Tensor, std::vector<float>> tokens(int64_t n) {
    std::vector<float> xf(size_t(n * kHidden));
    Tensor xb = Tensor::empty(DType::bf16, {n, kHidden});
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<int> ranks(kE);
    std::iota(ranks.begin(), ranks.end(), 0);
    for (int64_t t = 0; t < n; ++t) {
      std::shuffle(ranks.begin(), ranks.end(), rng);
      for (int64_t j = 0; j < kHidden; ++j) {
        const float v = j < kE ? 0.8f * float(ranks[size_t(j)]) - 6.0f : normal(rng);
        const uint16_t b = kernels::host_f32_to_bf16(v);
        xb.data<uint16_t>()[t * kHidden + j] = b;
        xf[size_t(t * kHidden + j)] = kernels::host_bf16_to_f32(b);
      }
    }
    return {xb, xf};
  }
};

// max |a - b| over max |b| (printed), and max |b| > 0.1.
double relative_diff(const Tensor& a, const Tensor& b) {
  double max_out = 0, max_diff = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    max_out = std::max(max_out, std::abs(double(b.data<float>()[i])));
    max_diff = std::max(max_diff, std::abs(double(b.data<float>()[i]) - double(a.data<float>()[i])));
  }
  EXPECT_GT(max_out, 0.1);
  return max_diff / std::max(max_out, 1e-30);
}

// The model's wiring: a MoeMlp on the CUDA backend (bf16 mode: FP8 experts packed, the shared
// expert along, the grouped path; one token on the one-token launches, and once more with
// TROUPE_MOE_ROWS=0 on the grouped ones) against the same layer on the CPU backend (the per-expert
// loop over dequantized weights), on the same x (bf16 values). Both choose the same experts
// (MoeLayerSetup); what remains is the act rounding to bf16 and the summation order: max |diff|
// <= 5e-3 of max |out| (a wrong expert, weight or a missing or doubled shared expert is off by O(1)).
// 600 tokens take the prefill path, whose x and act are e4m3 (2^-4 relative rounding per value, the
// CPU loop keeps them exact): 5e-2 there. With TROUPE_MOE_SHARED_AHEAD=1 (1 and 8 tokens) the shared
// expert runs first on a second stream as a dense MLP (CudaBackend::moe_shared_ahead), eagerly and
// under a step graph (recorded, then replayed over an out poisoned with 1e6): the same bound.
TEST(CudaMoeExperts, MoeLayerOnTheGroupedPathMatchesTheCpuLoop) {
  ::unsetenv("TROUPE_MOE_GROUPED");  // the default: the grouped path (models/moe.cpp)
  ::unsetenv("TROUPE_MOE_ROWS");     // the default: one token on kernels/moe_rows_gemv
  ::unsetenv("TROUPE_MOE_SHARED_AHEAD");  // the default: the shared expert in the grouped launches
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  CpuBackend cpu(2);
  MoeLayerSetup setup;
  constexpr int64_t kHidden = MoeLayerSetup::kHidden;
  auto on_gpu = MoeMlp::load(setup.config, setup.prefix, setup.loader(), gpu);
  ASSERT_TRUE(on_gpu.ok()) << on_gpu.error().message;
  auto on_cpu = MoeMlp::load(setup.config, setup.prefix, setup.loader(), cpu);
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.error().message;
  ASSERT_TRUE(kernels::moe_rows_supported(kHidden) && kernels::moe_rows_supported(MoeLayerSetup::kInter));
  struct Run {
    int64_t n;
    bool rows_off;        // TROUPE_MOE_ROWS=0: one token on the grouped kernels
    bool ahead = false;   // TROUPE_MOE_SHARED_AHEAD=1: the shared expert on the side stream
    bool graph = false;   // recorded as a step graph, then replayed over a poisoned out
  };
  for (const Run run : {Run{1, false}, Run{1, true}, Run{8, false}, Run{64, false}, Run{600, false},
                        Run{1, false, true}, Run{8, false, true}, Run{1, false, true, true},
                        Run{8, false, true, true}}) {
    const int64_t n = run.n;
    SCOPED_TRACE("n " + std::to_string(n) + (run.rows_off ? " TROUPE_MOE_ROWS=0" : "") +
                 (run.ahead ? " TROUPE_MOE_SHARED_AHEAD=1" : "") + (run.graph ? " step graph" : ""));
    if (run.rows_off) ::setenv("TROUPE_MOE_ROWS", "0", 1);
    if (run.ahead) ::setenv("TROUPE_MOE_SHARED_AHEAD", "1", 1);
    auto [x_host, xf] = setup.tokens(n);
    Tensor x_gpu = gpu.empty(DType::bf16, {n, kHidden}), out_gpu = gpu.empty(DType::f32, {n, kHidden});
    gpu.copy(x_host, x_gpu);
    const int64_t starts = gpu.shared_ahead_starts();
    if (run.graph) {
      for (int pass = 0; pass < 2; ++pass) {  // records and runs, then replays what it recorded
        if (pass == 1)
          gpu.copy(Tensor::from_f32(std::vector<float>(size_t(n * kHidden), 1e6f), {n, kHidden}), out_gpu);
        auto phase = gpu.begin_graph(9000 + n);
        ASSERT_TRUE(phase.ok()) << phase.error().message;
        EXPECT_EQ(phase.value(), pass == 0 ? GraphPhase::capture : GraphPhase::replay);
        (*on_gpu)->forward(x_gpu, out_gpu);
        const Status ended = gpu.end_graph(true);
        ASSERT_TRUE(ended.ok()) << ended.error().message;
      }
    } else {
      (*on_gpu)->forward(x_gpu, out_gpu);
    }
    ::unsetenv("TROUPE_MOE_ROWS");
    ::unsetenv("TROUPE_MOE_SHARED_AHEAD");
    // The switch took the second stream (once a forward: eager, or recorded then replayed).
    EXPECT_EQ(gpu.shared_ahead_starts() - starts, run.ahead ? (run.graph ? 2 : 1) : 0);
    const Tensor got = gpu.to_host(out_gpu);
    ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;
    Tensor out_cpu = Tensor::empty(DType::f32, {n, kHidden});
    (*on_cpu)->forward(Tensor::from_f32(xf, {n, kHidden}), out_cpu);
    const double diff = relative_diff(got, out_cpu);
    EXPECT_LE(diff, n > CudaBackend::kMoeExpertsMaxTokens ? 5e-2 : 5e-3);
    std::printf("MoeMlp n %lld%s%s%s: max |gpu - cpu| %.2e of max |out|\n", (long long)n,
                run.rows_off ? " (TROUPE_MOE_ROWS=0)" : "", run.ahead ? " (shared ahead)" : "",
                run.graph ? " (step graph replayed)" : "", diff);
  }
  gpu.drop_graphs();
}

// --all2all-backend all_to_all on the GPU: the layer loaded to dispatch tokens (the shared expert
// left out of the packed table), over an NCCL group of one rank (the only size one GPU allows:
// counts through ncclAllGather, rows through ncclSend/ncclRecv to itself, the received rows on the
// grouped experts), against the CPU loop; bound as above.
TEST(CudaMoeExperts, MoeLayerDispatchingTokensOverOneNcclRankMatchesTheCpuLoop) {
  ::unsetenv("TROUPE_MOE_GROUPED");
  ::unsetenv("TROUPE_MOE_ROWS");
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  auto ranks = make_nccl_collectives({gpu.device_index()});
  ASSERT_TRUE(ranks.ok()) << ranks.error().message;
  CpuBackend cpu(2);
  MoeLayerSetup setup;
  constexpr int64_t kHidden = MoeLayerSetup::kHidden;
  ModelConfig dispatching = setup.config;
  dispatching.moe.dispatch_tokens = true;
  auto on_gpu = MoeMlp::load(dispatching, setup.prefix, setup.loader(), gpu);
  ASSERT_TRUE(on_gpu.ok()) << on_gpu.error().message;
  auto on_cpu = MoeMlp::load(setup.config, setup.prefix, setup.loader(), cpu);
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.error().message;
  for (int64_t n : {1, 8, 64}) {
    SCOPED_TRACE("n " + std::to_string(n));
    auto [x_host, xf] = setup.tokens(n);
    Tensor x_gpu = gpu.empty(DType::bf16, {n, kHidden}), out_gpu = gpu.empty(DType::f32, {n, kHidden});
    gpu.copy(x_host, x_gpu);
    const Status dispatched = (*on_gpu)->forward_dispatched(x_gpu, out_gpu, *ranks.value()[0]);
    ASSERT_TRUE(dispatched.ok()) << dispatched.error().message;
    const Tensor got = gpu.to_host(out_gpu);
    ASSERT_TRUE(gpu.status().ok()) << gpu.status().error().message;
    Tensor out_cpu = Tensor::empty(DType::f32, {n, kHidden});
    (*on_cpu)->forward(Tensor::from_f32(xf, {n, kHidden}), out_cpu);
    const double diff = relative_diff(got, out_cpu);
    EXPECT_LE(diff, 5e-3);
    std::printf("MoeMlp dispatching n %lld: max |gpu - cpu| %.2e of max |out|\n", (long long)n, diff);
  }
}

}  // namespace
}  // namespace troupe::cuda

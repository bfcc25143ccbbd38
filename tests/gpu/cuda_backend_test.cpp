// The CUDA backend's own paths against the CPU backend (linear through cuBLAS, the bf16 GEMV and
// cuBLAS dispatch, attention dispatch and its plan, partition counts), and whole models against the
// transformers oracle fixtures. The kernels one by one: the op table (backend_ops_test.cpp).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/attention_decode.hpp"
#include "kernels/attention_prefill.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "kernels/gemv.hpp"
#include "runtime/attention_metadata.hpp"
#include "backends/cpu_backend.hpp"
#include "models/model_loader.hpp"
#include "engine/model_runner.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/unit/fixture_oracle.hpp"
#include "tests/gpu/paged_kv_inputs.hpp"

namespace troupe::cuda {
using namespace kernels;
namespace {

namespace fs = std::filesystem;

Tensor random_tensor(std::vector<int64_t> shape, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(size_t(numel_of(shape)));
  for (auto& v : values) v = normal(rng);
  return Tensor::from_f32(values, std::move(shape));
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto va = a.to_f32_vector(), vb = b.to_f32_vector();
  EXPECT_EQ(va.size(), vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
    if (std::isnan(va[i]) || std::isnan(vb[i])) return INFINITY;
    m = std::max(m, double(std::fabs(va[i] - vb[i])));
  }
  return m;
}

// linear with fp32 weights: cuBLAS SGEMM, then the bias kernel (the kernels themselves are checked
// by the op table, tests/gpu/backend_ops_test.cpp); sums of 111 products on both sides.
TEST(CudaBackendLinear, F32WeightsMatchCpuOnAwkwardSizes) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = **created;
  CpuBackend cpu(2);
  std::mt19937 rng(1234);
  for (int64_t n : {1, 19, 99, 989}) {
    const int64_t in = 111, out_features = 500;
    Tensor x = random_tensor({n, in}, rng), w = random_tensor({out_features, in}, rng);
    Tensor b = random_tensor({out_features}, rng);
    Tensor ref = Tensor::empty(DType::f32, {n, out_features});
    cpu.linear(x, w, b, ref);
    Tensor out = gpu.empty(DType::f32, {n, out_features});
    cudaMemset(out.raw(), 0xff, out.nbytes());  // NaN poison
    gpu.linear(gpu.upload_weight(x).value(), gpu.upload_weight(w).value(), gpu.upload_weight(b).value(), out);
    EXPECT_EQ(gpu.take_error(), "");
    EXPECT_LT(max_abs_diff(gpu.to_host(out), ref), 1e-3) << "linear n=" << n;
  }
}

// ---- bf16 products at decode batch sizes: the GEMV kernel (n <= 8) and cuBLAS (n > 8) ----

// Normal values rounded to bf16, so the upload (which rounds to bf16) keeps them exactly.
std::vector<float> random_bf16_values(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count));
  for (auto& v : values) v = bf16_to_f32(f32_to_bf16(normal(rng)));
  return values;
}

std::vector<uint16_t> to_bf16_bits(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = f32_to_bf16(values[i]);
  return bits;
}

// max over the outputs of |actual - ref| / (sum |x * w| + |bias|); NaN (a skipped output) gives inf.
double max_relative_error(const std::vector<float>& actual, const std::vector<double>& ref,
                          const std::vector<double>& abs_sum) {
  if (actual.size() != ref.size() || abs_sum.size() != ref.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(actual[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(actual[i]) - ref[i]) / std::max(abs_sum[i], 1e-30));
  }
  return worst;
}

// GEMV: fp32 activations, fp32 accumulation. Against an fp64 sum of the same bf16 weights the
// error is summation rounding only, bounded by (terms a lane adds in sequence + tree levels) x
// 2^-24 of the row's sum |x * w|: a lane adds <= in_features / 32 terms (<= 129 here, 448 for a
// 14336-wide row), then <= 5 shuffle levels, 3 levels across warps and the bias: under 3e-5.
constexpr double kGemvTolerance = 1e-4;
// cuBLAS rounds the activations to bf16 first: each product is off by <= 2^-9 of |x * w|, so
// results stay within 2^-8 of sum |x * w| (the same bound holds between the two paths).
constexpr double kCublasTolerance = 1.0 / 256;

class CudaBackendGemv : public ::testing::Test {
 protected:
  void SetUp() override {
    TROUPE_REQUIRE_GPU();
    auto created = CudaBackend::create(0, DType::bf16);
    ASSERT_TRUE(created.ok()) << created.error().message;
    gpu_ = std::move(created.value());
  }
  // backend.linear on host x (uploaded as fp32) into an output poisoned with NaN.
  std::vector<float> linear(const std::vector<float>& x, const Tensor& w, const Tensor& bias, int64_t n) {
    const int64_t out_features = w.size(0), in_features = w.size(1);
    Tensor out = gpu_->empty(DType::f32, {n, out_features});
    cudaMemset(out.raw(), 0xff, out.nbytes());  // all-ones bits: NaN
    gpu_->linear(Tensor::from_f32(x, {n, in_features}), w, bias, out);
    EXPECT_EQ(gpu_->take_error(), "");
    return gpu_->to_host(out).to_f32_vector();
  }

  std::unique_ptr<CudaBackend> gpu_;
  std::mt19937 rng_{4321};
};

TEST_F(CudaBackendGemv, MatchesFp64ReferenceOnAwkwardSizes) {
  for (int64_t n : {1, 2, 3, 5, 8}) {
    for (int64_t in_features : {19, 64, 99, 4096 + 8, 1000}) {
      for (int64_t out_features : {1, 7, 130, 989}) {
        for (bool with_bias : {false, true}) {
          const auto x = random_tensor({n, in_features}, rng_).to_f32_vector();
          const auto w = random_bf16_values(out_features * in_features, rng_);
          const auto b = random_tensor({out_features}, rng_).to_f32_vector();
          std::vector<double> ref(size_t(n * out_features)), abs_sum(ref.size());
          gemv_bf16_ref(x.data(), to_bf16_bits(w).data(), with_bias ? b.data() : nullptr, ref.data(), abs_sum.data(),
                        n, out_features, in_features);
          Tensor dw = gpu_->upload_weight(Tensor::from_f32(w, {out_features, in_features})).value();
          ASSERT_EQ(dw.dtype(), DType::bf16);
          Tensor db = with_bias ? gpu_->upload_weight(Tensor::from_f32(b, {out_features})).value() : Tensor();
          const auto actual = linear(x, dw, db, n);
          EXPECT_LE(max_relative_error(actual, ref, abs_sum), kGemvTolerance)
              << "n=" << n << " in=" << in_features << " out=" << out_features << " bias=" << with_bias;
        }
      }
    }
  }
}

// n = 9 goes through cuBLAS; its first 8 rows must agree with the GEMV on the same 8 rows.
TEST_F(CudaBackendGemv, CublasPathAgreesAtNine) {
  const int64_t n = 9;
  for (int64_t in_features : {19, 99, 4096 + 8}) {
    for (int64_t out_features : {7, 989}) {
      const auto x = random_tensor({n, in_features}, rng_).to_f32_vector();
      const auto w = random_bf16_values(out_features * in_features, rng_);
      const auto b = random_tensor({out_features}, rng_).to_f32_vector();
      std::vector<double> ref(size_t(n * out_features)), abs_sum(ref.size());
      gemv_bf16_ref(x.data(), to_bf16_bits(w).data(), b.data(), ref.data(), abs_sum.data(), n, out_features,
                    in_features);
      Tensor dw = gpu_->upload_weight(Tensor::from_f32(w, {out_features, in_features})).value();
      Tensor db = gpu_->upload_weight(Tensor::from_f32(b, {out_features})).value();
      const auto cublas = linear(x, dw, db, n);
      EXPECT_LE(max_relative_error(cublas, ref, abs_sum), kCublasTolerance)
          << "cuBLAS in=" << in_features << " out=" << out_features;

      const std::vector<float> x8(x.begin(), x.begin() + 8 * in_features);
      const auto gemv = linear(x8, dw, db, 8);
      const std::vector<double> ref8(ref.begin(), ref.begin() + 8 * out_features);
      const std::vector<double> abs8(abs_sum.begin(), abs_sum.begin() + 8 * out_features);
      EXPECT_LE(max_relative_error(gemv, ref8, abs8), kGemvTolerance)
          << "GEMV in=" << in_features << " out=" << out_features;
      const std::vector<double> cublas8(cublas.begin(), cublas.begin() + 8 * out_features);
      EXPECT_LE(max_relative_error(gemv, cublas8, abs8), kCublasTolerance)
          << "GEMV vs cuBLAS in=" << in_features << " out=" << out_features;
    }
  }
}

// The launcher itself: decode shapes (many blocks, every split of in_features across warps),
// weight and activation pointers off 16-byte alignment (the scalar path), and bad sizes.
// ---- paged attention: tensor-core prefill and split-KV decode kernels vs the CPU backend ----

struct AttentionCase {
  std::vector<std::pair<int32_t, int32_t>> seqs;  // {context_len, num_new_tokens}
  int64_t num_heads, num_kv_heads, head_dim, block_size;
};

// Sequences of 1, 19, 99, 989 new tokens, chunks starting mid-sequence, GQA 1/3/4/8/64/128 with odd
// head counts, every supported head_dim plus one the new kernels reject (48), block sizes 8-32,
// prefill and decode sequences in one batch, and decode contexts long enough to split.
const std::vector<AttentionCase>& attention_cases() {
  static const std::vector<AttentionCase> cases = {
      {{{1, 1}}, 7, 7, 64, 16},
      {{{19, 19}}, 12, 3, 128, 16},
      {{{99, 99}}, 8, 1, 64, 16},
      {{{989, 989}}, 8, 2, 128, 16},
      {{{300, 45}}, 7, 7, 128, 16},    // chunk starting at position 255
      {{{1030, 1}}, 32, 8, 128, 16},   // batch-1 decode: split into partitions
      {{{2500, 1}, {700, 1}, {129, 1}}, 12, 3, 128, 16},  // partitions empty for the shorter ones
      {{{1200, 1}, {150, 99}, {19, 19}, {1030, 1}, {69, 5}}, 12, 3, 64, 8},
      {{{77, 77}, {40, 2}, {3, 3}}, 4, 2, 16, 32},
      {{{70, 70}, {530, 1}}, 4, 4, 256, 16},
      {{{33, 17}, {200, 130}}, 64, 1, 32, 16},  // group 64: two tokens per query tile
      {{{45, 45}}, 128, 1, 16, 16},             // group 128: one token per query tile
      {{{50, 50}, {90, 1}}, 6, 2, 48, 16},      // head_dim 48: the reference kernel
  };
  return cases;
}

struct AttentionInputs {
  Tensor q, k_cache, v_cache;  // host
  AttentionMetadata meta;      // host
  std::vector<std::vector<int32_t>> tables;
};

AttentionInputs make_attention_inputs(const AttentionCase& c, std::mt19937& rng) {
  PagedKv kv = make_paged_kv(c.seqs, c.num_kv_heads, c.head_dim, c.block_size, rng);
  AttentionInputs in;
  in.meta = std::move(kv.meta);
  in.tables = std::move(kv.tables);
  in.q = random_tensor({kv.num_tokens, c.num_heads, c.head_dim}, rng);
  in.k_cache = Tensor::from_f32(kv.k, kv.shape);
  in.v_cache = Tensor::from_f32(kv.v, kv.shape);
  return in;
}

Tensor copy_to_gpu(CudaBackend& gpu, const Tensor& host) {
  Tensor d = gpu.empty(host.dtype(), host.shape());
  EXPECT_EQ(cudaMemcpy(d.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

TEST(CudaAttention, MatchesCpuOnAwkwardBatches) {
  TROUPE_REQUIRE_GPU();
  CpuBackend cpu(2);
  std::mt19937 rng(777);
  for (DType weights : {DType::f32, DType::bf16}) {
    auto created = CudaBackend::create(0, weights);
    ASSERT_TRUE(created.ok()) << created.error().message;
    CudaBackend& gpu = **created;
    const double tolerance = weights == DType::f32 ? kAttentionF32Tolerance : kAttentionBf16Tolerance;
    for (size_t i = 0; i < attention_cases().size(); ++i) {
      const AttentionCase& c = attention_cases()[i];
      AttentionInputs in = make_attention_inputs(c, rng);
      const float scale = 1.0f / std::sqrt(float(c.head_dim));
      Tensor ref = Tensor::empty(DType::f32, in.q.shape());
      cpu.paged_attention(in.q, in.k_cache, in.v_cache, in.meta, scale, ref);

      const AttentionMetadata meta = gpu.upload_metadata(in.meta);
      Tensor out = gpu.empty(DType::f32, in.q.shape());
      cudaMemset(out.raw(), 0xff, out.nbytes());  // NaN poison
      Tensor k_cache = copy_to_gpu(gpu, in.k_cache), v_cache = copy_to_gpu(gpu, in.v_cache);
      Tensor q = copy_to_gpu(gpu, in.q);
      gpu.paged_attention(q, k_cache, v_cache, meta, scale, out);
      // Twice: the second call reuses the step's plan (as every layer after the first does).
      gpu.paged_attention(q, k_cache, v_cache, meta, scale, out);
      EXPECT_EQ(gpu.take_error(), "") << "case " << i;
      const double error = attention_error(gpu.to_host(out), ref);
      EXPECT_LE(error, tolerance) << "case " << i << " weights " << dtype_name(weights) << " heads " << c.num_heads
                                  << "/" << c.num_kv_heads << " head_dim " << c.head_dim;
      std::printf("attention case %zu %s: max error %.2e\n", i, std::string(dtype_name(weights)).c_str(), error);
    }
  }
}

// The launchers directly: forced partition counts agree with one partition, and bad shapes are
// refused with cudaErrorInvalidValue instead of launching.
TEST(CudaAttention, PartitionCountsAgreeAndBadShapesAreRefused) {
  TROUPE_REQUIRE_GPU();
  auto created = CudaBackend::create(0);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = **created;
  std::mt19937 rng(31);
  const AttentionCase c{{{1500, 1}, {20, 1}, {600, 1}}, 8, 2, 128, 16};
  AttentionInputs in = make_attention_inputs(c, rng);
  const AttentionMetadata meta = gpu.upload_metadata(in.meta);
  Tensor k_cache = copy_to_gpu(gpu, in.k_cache), v_cache = copy_to_gpu(gpu, in.v_cache), q = copy_to_gpu(gpu, in.q);
  std::vector<int32_t> seq_of_token = {0, 1, 2};
  Tensor d_seq = copy_to_gpu(gpu, Tensor::from_i32(seq_of_token, {3}));
  const int64_t n = 3, max_context = 1500;
  auto run = [&](int64_t parts) {
    const int64_t floats = decode_workspace_floats(n, c.num_heads, c.head_dim, parts);
    Tensor workspace = gpu.empty(DType::f32, {std::max<int64_t>(1, floats)});
    Tensor out = gpu.empty(DType::f32, in.q.shape());
    cudaMemset(out.raw(), 0xff, out.nbytes());
    EXPECT_EQ(launch_decode_attention_f32(q.data<float>(), k_cache.data<float>(), v_cache.data<float>(),
                                          meta.positions.data<int32_t>(), d_seq.data<int32_t>(), nullptr, n,
                                          meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq, c.block_size,
                                          c.num_heads, c.num_kv_heads, c.head_dim, 0.1f, parts,
                                          decode_partition_keys(max_context, parts),
                                          floats > 0 ? workspace.data<float>() : nullptr, out.data<float>(), nullptr),
              cudaSuccess);
    return gpu.to_host(out);
  };
  const Tensor one = run(1);
  ASSERT_LT(attention_error(one, one), 1.0);  // finite
  for (int64_t parts : std::vector<int64_t>{2, 5, 12, kDecodeMaxPartitions})
    EXPECT_LE(attention_error(run(parts), one), kAttentionF32Tolerance) << parts << " partitions";

  EXPECT_EQ(decode_num_partitions(1, 32, 1024, 132), 8);   // batch-1 decode: 256 blocks
  EXPECT_EQ(decode_num_partitions(64, 32, 4096, 132), 1);  // enough blocks already
  EXPECT_EQ(decode_num_partitions(1, 32, 100, 132), 1);    // short context
  EXPECT_EQ(decode_workspace_floats(3, 8, 128, 1), 0);

  const float* f = q.data<float>();
  const int32_t* i32 = d_seq.data<int32_t>();
  float* o = k_cache.data<float>();
  EXPECT_EQ(launch_decode_attention_f32(f, f, f, i32, i32, nullptr, 1, i32, 1, 16, 8, 2, 48, 0.1f, 1, 16, nullptr, o,
                                        nullptr),
            cudaErrorInvalidValue);  // head_dim 48
  EXPECT_EQ(launch_decode_attention_f32(f, f, f, i32, i32, nullptr, 1, i32, 1, 16, 8, 3, 64, 0.1f, 1, 16, nullptr, o,
                                        nullptr),
            cudaErrorInvalidValue);  // 8 heads over 3 kv heads
  EXPECT_EQ(launch_decode_attention_f32(f, f, f, i32, i32, nullptr, 1, i32, 1, 16, 8, 2, 64, 0.1f, 4, 16, nullptr, o,
                                        nullptr),
            cudaErrorInvalidValue);  // partitions without a workspace
  EXPECT_EQ(launch_prefill_attention_bf16(f, f, f, i32, i32, 1, i32, 1, 16, 8, 2, 48, 0.1f, o, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(launch_prefill_attention_bf16(f, f, f, i32, i32, 1, i32, 1, 16, 130, 1, 64, 0.1f, o, nullptr),
            cudaErrorInvalidValue);  // group of 130 > 128 rows per tile
  EXPECT_EQ(launch_prefill_attention_bf16(f, f, f, i32, i32, 0, i32, 1, 16, 8, 2, 64, 0.1f, o, nullptr), cudaSuccess);
  // Hopper's kernel: head_dim 128 only, key tiles 64 / 128, every pointer given; nothing to do is done.
  const auto* b16 = reinterpret_cast<const uint16_t*>(f);
  EXPECT_FALSE(prefill_attention_wgmma_supports(64, 4));
  EXPECT_TRUE(prefill_attention_wgmma_supports(128, 4));
  EXPECT_EQ(launch_prefill_attention_wgmma(f, b16, b16, i32, i32, 1, i32, 1, 16, 8, 2, 64, 0.1f, o, nullptr),
            cudaErrorInvalidValue);  // head_dim 64
  EXPECT_EQ(launch_prefill_attention_wgmma(f, b16, b16, i32, i32, 1, i32, 1, 16, 8, 2, 128, 0.1f, o, nullptr, 128, 32),
            cudaErrorInvalidValue);  // 32-key tiles
  EXPECT_EQ(launch_prefill_attention_wgmma(f, b16, b16, i32, i32, 1, i32, 1, 16, 8, 2, 128, 0.1f, o, nullptr, 64, 128),
            cudaErrorInvalidValue);  // 64 rows with 128 keys: not built
  EXPECT_EQ(launch_prefill_attention_wgmma(f, b16, b16, i32, i32, 1, i32, 1, 16, 8, 2, 128, 0.1f, o, nullptr, 32),
            cudaErrorInvalidValue);  // 32 rows a CTA
  EXPECT_EQ(launch_prefill_attention_wgmma(f, nullptr, b16, i32, i32, 1, i32, 1, 16, 8, 2, 128, 0.1f, o, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(launch_prefill_attention_wgmma(f, b16, b16, i32, i32, 1, i32, 1, 16, 8, 3, 128, 0.1f, o, nullptr),
            cudaErrorInvalidValue);  // 8 heads over 3 kv heads
  EXPECT_EQ(launch_prefill_attention_wgmma(f, b16, b16, i32, i32, 0, i32, 1, 16, 8, 2, 128, 0.1f, o, nullptr),
            cudaSuccess);
  EXPECT_EQ(gpu.take_error(), "");
}

// Tiles: prefill sequences only, group-sized token counts, most keys first.
TEST(CudaAttention, PrefillTilesCoverPrefillTokensOnly) {
  const std::vector<int32_t> query_start = {0, 1, 41, 42, 50};
  const std::vector<int32_t> context_lens = {10, 40, 7, 108};
  const int64_t tokens_per_tile = prefill_tokens_per_tile(128, 8);
  ASSERT_EQ(tokens_per_tile, 16);  // 128 rows per tile over a group of 8
  EXPECT_EQ(prefill_tokens_per_tile(256, 4), 16);  // 64 rows at head_dim 256
  EXPECT_EQ(prefill_tokens_per_tile(64, 128), 1);
  const auto tiles = build_prefill_tiles(query_start.data(), context_lens.data(), 4, tokens_per_tile);
  std::vector<int32_t> covered(50, 0);
  int32_t previous_last = INT32_MAX;
  ASSERT_EQ(tiles.size() % 3, 0u);
  for (size_t i = 0; i < tiles.size(); i += 3) {
    const int32_t begin = tiles[i], end = tiles[i + 1], seq = tiles[i + 2];
    EXPECT_LE(end - begin, 16);
    EXPECT_TRUE(seq == 1 || seq == 3);
    EXPECT_GE(begin, query_start[size_t(seq)]);
    EXPECT_LE(end, query_start[size_t(seq) + 1]);
    const int32_t last = context_lens[size_t(seq)] - (query_start[size_t(seq) + 1] - end) - 1;
    EXPECT_LE(last, previous_last);
    previous_last = last;
    for (int32_t t = begin; t < end; ++t) ++covered[size_t(t)];
  }
  for (int32_t t = 0; t < 50; ++t) EXPECT_EQ(covered[size_t(t)], (t == 0 || t == 41) ? 0 : 1) << "token " << t;
}

// Whole models: logits vs transformers (fp32) and 32 greedy tokens, on every fixture of a served
// dense architecture (the DeepSeek-V3 ones: cuda_mla_test.cpp).
std::vector<std::string> fixture_dirs() {
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(fs::path(troupe_source_dir()) / "tests/fixtures/models"))
    if (fs::exists(e.path() / "oracle.json") && !is_deepseek_fixture(e.path())) dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

void check_fixtures(DType weight_dtype, double tolerance, bool require_greedy) {
  auto gpu = CudaBackend::create(0, weight_dtype);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  const auto dirs = fixture_dirs();
  ASSERT_FALSE(dirs.empty());
  for (const auto& dir : dirs) {
    std::ifstream in(dir + "/oracle.json");
    std::stringstream text;
    text << in.rdbuf();
    const auto oracle = nlohmann::json::parse(text.str());
    auto logits_file = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(logits_file.ok()) << logits_file.error().message;
    auto model = load_model(dir, **gpu);
    ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
    const auto prompts = oracle.at("prompts").get<std::vector<std::vector<int32_t>>>();
    const auto greedy = oracle.at("greedy").get<std::vector<std::vector<int32_t>>>();
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto result = greedy_generate(**model, **gpu, prompts[i], int64_t(greedy[i].size()), 16, true);
      ASSERT_TRUE(result.ok()) << result.error().message;
      EXPECT_EQ((*gpu)->take_error(), "");
      if (require_greedy) {
        EXPECT_EQ(result->tokens, greedy[i]) << dir << " prompt " << i;
      }
      const TensorView* view = (*logits_file)->find("logits." + std::to_string(i));
      ASSERT_NE(view, nullptr);
      std::vector<float> expected_values(size_t(view->numel()));
      ASSERT_TRUE(convert_to_f32(view->dtype, view->data, expected_values.size(), expected_values.data()));
      const std::vector<float>* expected = &expected_values;
      const int64_t vocab = int64_t(expected->size() / prompts[i].size());
      double max_diff = 0;
      for (size_t t = 0; t < prompts[i].size(); ++t) {
        const auto& row = result->prompt_logits[t];
        const float* want = expected->data() + t * size_t(vocab);
        for (int64_t v = 0; v < vocab; ++v) max_diff = std::max(max_diff, double(std::fabs(row[size_t(v)] - want[v])));
        if (require_greedy) {
          EXPECT_EQ(std::max_element(row.begin(), row.end()) - row.begin(), std::max_element(want, want + vocab) - want)
              << dir << " prompt " << i << " position " << t;
        }
      }
      EXPECT_LE(max_diff, tolerance) << dir << " prompt " << i;
      std::printf("%s %s prompt %zu: max |logit diff| %.2e\n", std::string(dtype_name(weight_dtype)).c_str(),
                  fs::path(dir).filename().c_str(), i, max_diff);
    }
  }
}

TEST(CudaBackendModels, FixturesMatchTransformers) {
  TROUPE_REQUIRE_GPU();
  check_fixtures(DType::f32, 1e-3, true);
}

// bf16 weights (bf16 inputs to the products, fp32 accumulation): logits within 0.1 of the fp32
// oracle on these O(1)-logit random models (bf16 keeps 8 mantissa bits: ~0.4% per weight,
// averaging down over 64-176-term sums). Random tiny models have near-ties, so tokens may differ.
TEST(CudaBackendModels, Bf16WeightsStayNearTransformers) {
  TROUPE_REQUIRE_GPU();
  check_fixtures(DType::bf16, 0.1, false);
}
}  // namespace
}  // namespace troupe::cuda
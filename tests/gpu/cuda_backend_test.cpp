// The CUDA backend against the CPU backend op by op (awkward sizes, fresh random inputs, poisoned
// outputs), and whole models against the transformers oracle fixtures.
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

#include "kernels/cuda_backend.hpp"
#include "kernels/gemv.hpp"
#include "runtime/cpu_backend.hpp"
#include "runtime/model_loader.hpp"
#include "runtime/model_runner.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::kernels {
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

class CudaBackendOps : public ::testing::Test {
 protected:
  void SetUp() override {
    TROUPE_REQUIRE_GPU();
    auto created = CudaBackend::create(0);
    ASSERT_TRUE(created.ok()) << created.error().message;
    gpu_ = std::move(created.value());
  }
  // A device tensor filled with NaN, so an op that skips elements shows.
  Tensor poisoned(std::vector<int64_t> shape) {
    std::vector<float> nan(size_t(numel_of(shape)), NAN);
    return gpu_->upload_weight(Tensor::from_f32(nan, shape)).value();
  }
  Tensor up(const Tensor& t) { return gpu_->upload_weight(t).value(); }
  Tensor down(const Tensor& t) { return gpu_->to_host(t); }

  CpuBackend cpu_{2};
  std::unique_ptr<CudaBackend> gpu_;
  std::mt19937 rng_{1234};
};

// fp32 on both sides; differences come from summation order only.
constexpr double kTolerance = 2e-4;

TEST_F(CudaBackendOps, ElementwiseAndNormsOnAwkwardSizes) {
  for (int64_t n : {1, 19, 99, 989}) {
    for (int64_t hidden : {111, 500}) {
      Tensor x = random_tensor({n, hidden}, rng_), y = random_tensor({n, hidden}, rng_);
      Tensor w = random_tensor({hidden}, rng_);
      // rmsnorm
      Tensor ref = Tensor::empty(DType::f32, {n, hidden});
      cpu_.rmsnorm(x, w, 1e-5f, ref);
      Tensor out = poisoned({n, hidden});
      gpu_->rmsnorm(up(x), up(w), 1e-5f, out);
      EXPECT_LT(max_abs_diff(down(out), ref), kTolerance) << "rmsnorm n=" << n << " hidden=" << hidden;
      // add_rmsnorm (residual updated in place)
      Tensor residual_ref = x.clone();
      cpu_.add_rmsnorm(residual_ref, y, w, 1e-5f, ref);
      Tensor residual = up(x);
      out = poisoned({n, hidden});
      gpu_->add_rmsnorm(residual, up(y), up(w), 1e-5f, out);
      EXPECT_LT(max_abs_diff(down(out), ref), kTolerance) << "add_rmsnorm n=" << n;
      EXPECT_LT(max_abs_diff(down(residual), residual_ref), kTolerance) << "add_rmsnorm residual n=" << n;
      // silu_and_mul, add
      cpu_.silu_and_mul(x, y, ref);
      out = poisoned({n, hidden});
      gpu_->silu_and_mul(up(x), up(y), out);
      EXPECT_LT(max_abs_diff(down(out), ref), kTolerance) << "silu_and_mul n=" << n;
      // silu_and_mul_packed over a fused [n, 2 * hidden] gate/up input
      Tensor gate_up = random_tensor({n, 2 * hidden}, rng_);
      cpu_.silu_and_mul_packed(gate_up, ref);
      out = poisoned({n, hidden});
      gpu_->silu_and_mul_packed(up(gate_up), out);
      EXPECT_LT(max_abs_diff(down(out), ref), kTolerance) << "silu_and_mul_packed n=" << n;
      cpu_.add(x, y, ref);
      out = poisoned({n, hidden});
      gpu_->add(up(x), up(y), out);
      EXPECT_LT(max_abs_diff(down(out), ref), kTolerance) << "add n=" << n;
    }
  }
}

TEST_F(CudaBackendOps, LinearEmbeddingGatherArgmax) {
  for (int64_t n : {1, 19, 99, 989}) {
    const int64_t in = 111, out_features = 500, vocab = 333;
    Tensor x = random_tensor({n, in}, rng_), w = random_tensor({out_features, in}, rng_);
    Tensor b = random_tensor({out_features}, rng_);
    Tensor ref = Tensor::empty(DType::f32, {n, out_features});
    cpu_.linear(x, w, b, ref);
    Tensor out = poisoned({n, out_features});
    gpu_->linear(up(x), up(w), up(b), out);
    EXPECT_LT(max_abs_diff(down(out), ref), 1e-3) << "linear n=" << n;  // sums of 111 products

    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = int32_t(rng_() % vocab);
    Tensor table = random_tensor({vocab, in}, rng_);
    Tensor ids_t = Tensor::from_i32(ids, {n});
    Tensor emb_ref = Tensor::empty(DType::f32, {n, in});
    cpu_.embedding(ids_t, table, emb_ref);
    Tensor emb = poisoned({n, in});
    gpu_->embedding(ids_t, up(table), emb);
    EXPECT_EQ(max_abs_diff(down(emb), emb_ref), 0.0) << "embedding n=" << n;

    std::vector<int32_t> rows;
    for (int64_t i = n - 1; i >= 0; i -= 3) rows.push_back(int32_t(i));
    Tensor g_ref = Tensor::empty(DType::f32, {int64_t(rows.size()), in});
    cpu_.gather_rows(x, rows, g_ref);
    Tensor g = poisoned({int64_t(rows.size()), in});
    gpu_->gather_rows(up(x), rows, g);
    EXPECT_EQ(max_abs_diff(down(g), g_ref), 0.0) << "gather_rows n=" << n;

    Tensor logits = random_tensor({n, vocab}, rng_);
    EXPECT_EQ(gpu_->argmax(up(logits)), cpu_.argmax(logits)) << "argmax n=" << n;
  }
}

TEST_F(CudaBackendOps, RopeOnOddHeadCounts) {
  for (int64_t n : {1, 19, 99, 989}) {
    const int64_t heads = 7, kv_heads = 1, head_dim = 48;
    Tensor q = random_tensor({n, heads, head_dim}, rng_), k = random_tensor({n, kv_heads, head_dim}, rng_);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (auto& p : pos) p = int32_t(rng_() % 4096);
    std::vector<float> inv_freq(head_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * float(i) / head_dim);
    Tensor positions = Tensor::from_i32(pos, {n}), freq = Tensor::from_f32(inv_freq, {head_dim / 2});
    Tensor q_ref = q.clone(), k_ref = k.clone();
    cpu_.rope(q_ref, k_ref, positions, freq);
    Tensor dq = up(q), dk = up(k);
    gpu_->rope(dq, dk, positions, up(freq));
    EXPECT_LT(max_abs_diff(down(dq), q_ref), 1e-3) << "rope q n=" << n;  // angles up to 4096 rad
    EXPECT_LT(max_abs_diff(down(dk), k_ref), 1e-3) << "rope k n=" << n;
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
TEST(GemvKernel, DecodeShapesMisalignedPointersAndBadSizes) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(99);
  struct Case {
    int64_t n, out_features, in_features, weight_shift, x_shift;  // shifts in elements
  };
  const std::vector<Case> cases = {
      {1, 1024, 4096, 0, 0},  {8, 1024, 4096, 0, 0}, {1, 4096, 4096, 0, 0},  {4, 4090, 512, 0, 0},
      {8, 128256, 64, 0, 0},  {2, 130, 14336, 0, 0}, {3, 130, 1024, 1, 0},   {5, 989, 1024, 0, 1},
      {8, 7, 4096 + 8, 4, 2}, {1, 33, 72, 8, 4},
  };
  for (const Case& c : cases) {
    const auto x = random_tensor({c.n, c.in_features}, rng).to_f32_vector();  // full fp32 values
    const auto w = to_bf16_bits(random_bf16_values(c.out_features * c.in_features, rng));
    const auto b = random_bf16_values(c.out_features, rng);
    std::vector<double> ref(size_t(c.n * c.out_features)), abs_sum(ref.size());
    gemv_bf16_ref(x.data(), w.data(), b.data(), ref.data(), abs_sum.data(), c.n, c.out_features, c.in_features);

    float *dx = nullptr, *db = nullptr, *dout = nullptr;
    uint16_t* dw = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dx), (x.size() + 8) * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dw), (w.size() + 8) * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&db), b.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dout), ref.size() * 4), cudaSuccess);
    cudaMemcpy(dx + c.x_shift, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dw + c.weight_shift, w.data(), w.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
    cudaMemset(dout, 0xff, ref.size() * 4);  // NaN poison
    EXPECT_EQ(launch_gemv_bf16(dx + c.x_shift, dw + c.weight_shift, db, dout, c.n, c.out_features, c.in_features,
                               nullptr),
              cudaSuccess);
    std::vector<float> actual(ref.size());
    EXPECT_EQ(cudaMemcpy(actual.data(), dout, actual.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(db);
    cudaFree(dout);
    EXPECT_LE(max_relative_error(actual, ref, abs_sum), kGemvTolerance)
        << "n=" << c.n << " out=" << c.out_features << " in=" << c.in_features << " weight shift " << c.weight_shift
        << " x shift " << c.x_shift;
  }
  float* some = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&some), 1024), cudaSuccess);
  const uint16_t* w16 = reinterpret_cast<const uint16_t*>(some);
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some, 0, 4, 4, nullptr), cudaSuccess);  // nothing to do
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some, 9, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some, 1, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some, 1, 4, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16(nullptr, w16, nullptr, some, 1, 4, 4, nullptr), cudaErrorInvalidValue);
  cudaFree(some);
}

// Whole models: logits vs transformers (fp32) and 32 greedy tokens, on every fixture.
std::vector<std::string> fixture_dirs() {
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(fs::path(troupe_source_dir()) / "tests/fixtures/models"))
    if (fs::exists(e.path() / "oracle.json")) dirs.push_back(e.path().string());
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
}  // namespace troupe::kernels

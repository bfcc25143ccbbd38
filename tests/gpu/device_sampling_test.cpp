// CudaBackend::sample_on_device (kernels/sampling.hpp) against the host Sampler: the filtered rows
// (temperature, top-k, top-p, min-p) pick what the host picks for the same uniform, up to boundary
// ties. The greedy rows against sample_greedy_ref are also in the op table (backend_ops_test.cpp).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "engine/sampler.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
namespace {

class CudaSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    TROUPE_REQUIRE_GPU();
    auto created = CudaBackend::create(0);
    ASSERT_TRUE(created.ok()) << created.error().message;
    gpu_ = std::move(created.value());
  }
  Tensor up(const Tensor& t) { return gpu_->upload_weight(t).value(); }

  std::unique_ptr<CudaBackend> gpu_;
};

// Device sampling against the host Sampler on the same logits and the same uniform: greedy,
// temperature, top-k, top-p and min-p over awkward vocab sizes, rows with many tied logits and
// -inf entries, uniforms 0, 0.999999 and seeded draws. A row may differ only when a cumulative
// boundary of the host's walk lies within 1e-4 of the uniform (or the top-p cut within 1e-5 of
// top_p): then the device's id is the host's pick for the nudged uniform (or top_p): a tie.
TEST_F(CudaSampling, SampleOnDeviceMatchesHostSampler) {
  std::mt19937 rng(1234);
  Sampler sampler;
  int64_t num_checked = 0, num_ties = 0;
  for (const int64_t vocab : {int64_t(1), int64_t(19), int64_t(1000), int64_t(32000), int64_t(151936)}) {
    std::vector<SamplingParams> configs;
    SamplingParams greedy;
    greedy.temperature = 0.0;
    configs.push_back(greedy);
    for (double temperature : {0.5, 1.0, 1.7})
      for (int64_t top_k : {int64_t(-1), int64_t(1), int64_t(5), int64_t(50)})
        for (double top_p : {1.0, 0.9, 0.3})
          for (double min_p : {0.0, 0.05}) {
            SamplingParams p;
            p.temperature = temperature;
            p.top_k = top_k;
            p.top_p = top_p;
            p.min_p = min_p;
            configs.push_back(p);
          }
    // Per config: uniforms 0 and 0.999999, then two seeded draws (host: sample_row with the RNG).
    struct Case {
      size_t config;
      double uniform;
      int64_t seed;  // >= 0: the host draws from SequenceRng(seed), the device gets its first draw
    };
    std::vector<Case> cases;
    int64_t next_seed = 0;
    for (size_t c = 0; c < configs.size(); ++c) {
      cases.push_back({c, 0.0, -1});
      if (configs[c].is_greedy()) continue;
      cases.push_back({c, 0.999999, -1});
      for (int k = 0; k < 2; ++k) {
        const int64_t seed = next_seed++;
        cases.push_back({c, SequenceRng(seed).next_uniform(), seed});
      }
    }
    const int64_t num_rows = int64_t(cases.size());
    std::vector<float> logits(size_t(num_rows * vocab));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (int64_t r = 0; r < num_rows; ++r) {
      float* row = logits.data() + r * vocab;
      for (int64_t i = 0; i < vocab; ++i) row[i] = normal(rng);
      if (r % 3 == 1)  // many ties: the order among equal logits is by id
        for (int64_t i = 0; i < vocab; ++i) row[i] = std::round(row[i] * 2.0f) / 2.0f;
      if (r % 4 == 2 && vocab > 1)
        for (int64_t i = 0; i < vocab; i += 7) row[i] = -INFINITY;
    }
    std::vector<DeviceSampleRow> rows;
    for (const Case& c : cases) {
      const SamplingParams& p = configs[c.config];
      rows.push_back(DeviceSampleRow{p.temperature, p.top_k, p.top_p, p.min_p, c.uniform});
    }
    std::vector<int32_t> ids;
    ASSERT_TRUE(gpu_->sample_on_device(up(Tensor::from_f32(logits, {num_rows, vocab})), rows, &ids))
        << "vocab " << vocab << ": " << gpu_->take_error();
    ASSERT_EQ(ids.size(), size_t(num_rows));
    for (int64_t r = 0; r < num_rows; ++r) {
      const Case& c = cases[size_t(r)];
      const SamplingParams& p = configs[c.config];
      const float* row = logits.data() + r * vocab;
      auto host_pick = [&](const SamplingParams& params, double uniform) {
        SamplerRow sr;
        sr.params = &params;
        auto token = sampler.sample_row_with_uniform(row, vocab, sr, uniform);
        EXPECT_TRUE(token.ok()) << token.error().message;
        return token.ok() ? token.value().token_id : -2;
      };
      int32_t expected = -2;
      if (c.seed >= 0) {  // the seeded path the engine relies on: draw, then the same pick
        SequenceRng seq_rng(c.seed);
        SamplerRow sr;
        sr.params = &p;
        sr.rng = &seq_rng;
        auto token = sampler.sample_row(row, vocab, sr);
        ASSERT_TRUE(token.ok()) << token.error().message;
        expected = token.value().token_id;
        ASSERT_EQ(expected, host_pick(p, c.uniform)) << "seeded draw and explicit uniform disagree";
      } else {
        expected = host_pick(p, c.uniform);
      }
      ++num_checked;
      if (ids[size_t(r)] == expected) continue;
      // A tie: the device's id is what the host picks for a uniform within 1e-4 of this one (or
      // for top_p nudged by 1e-5), i.e. a boundary of the host's walk lies that close.
      bool tie = false;
      const int32_t got = ids[size_t(r)];
      if (!p.is_greedy()) {
        for (double delta : {1e-7, 1e-6, 1e-5, 1e-4})
          tie = tie || host_pick(p, std::max(0.0, c.uniform - delta)) == got ||
                host_pick(p, std::min(std::nextafter(1.0, 0.0), c.uniform + delta)) == got;
        if (p.top_p < 1.0)
          for (double f : {1.0 - 1e-5, 1.0 + 1e-5}) {
            SamplingParams nudged = p;
            nudged.top_p = std::min(1.0, p.top_p * f);
            tie = tie || host_pick(nudged, c.uniform) == got;
          }
      }
      if (tie) {
        ++num_ties;
        continue;
      }
      ADD_FAILURE() << "vocab " << vocab << " row " << r << " (T " << p.temperature << ", top_k " << p.top_k
                    << ", top_p " << p.top_p << ", min_p " << p.min_p << ", u " << c.uniform << "): device "
                    << ids[size_t(r)] << ", host " << expected;
    }
  }
  std::printf("device sampling: %lld rows checked, %lld boundary ties skipped\n", (long long)num_checked,
              (long long)num_ties);
  EXPECT_LE(num_ties * 100, num_checked) << "more than 1% of the rows sit on a boundary";

  // A NaN row is declined (the host sampler reports it); an empty batch is fine.
  std::vector<int32_t> ids;
  const std::vector<float> with_nan{0.5f, NAN, 1.0f};
  EXPECT_FALSE(gpu_->sample_on_device(up(Tensor::from_f32(with_nan, {1, 3})), {DeviceSampleRow{}}, &ids));
  const std::vector<float> all_neg_inf{-INFINITY, -INFINITY};
  EXPECT_FALSE(gpu_->sample_on_device(up(Tensor::from_f32(all_neg_inf, {1, 2})), {DeviceSampleRow{}}, &ids));
  EXPECT_FALSE(gpu_->sample_on_device(Tensor::from_f32(with_nan, {1, 3}), {DeviceSampleRow{}}, &ids))
      << "host logits are not the device's";
}

// Structured outputs on the device: rows with a token mask (DeviceSampleRow::allowed) pick what
// the host Sampler picks with the same mask (SamplerRow::allowed), never a masked-out id; rows
// without a mask share the batch. A mask shorter than the vocabulary is declined.
TEST_F(CudaSampling, MaskedRowsMatchTheHostSamplerAndNeverPickAMaskedId) {
  std::mt19937 rng(99);
  Sampler sampler;
  for (const int64_t vocab : {int64_t(33), int64_t(1000), int64_t(129280)}) {
    const int64_t num_words = (vocab + 31) / 32;
    const int64_t num_rows = 12;
    std::vector<float> logits(size_t(num_rows * vocab));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (float& x : logits) x = normal(rng);
    std::vector<std::vector<uint32_t>> masks(static_cast<size_t>(num_rows));
    std::vector<SamplingParams> params(static_cast<size_t>(num_rows));
    std::vector<DeviceSampleRow> rows;
    for (int64_t r = 0; r < num_rows; ++r) {
      SamplingParams& p = params[size_t(r)];
      p.temperature = r % 3 == 0 ? 0.0 : 0.8;
      p.top_p = r % 4 == 1 ? 0.9 : 1.0;
      DeviceSampleRow d{p.temperature, p.top_k, p.top_p, p.min_p, SequenceRng(r).next_uniform()};
      if (r % 2 == 0) {  // every other row masked: a few allowed ids, never the row's argmax
        std::vector<uint32_t>& mask = masks[size_t(r)];
        mask.assign(size_t(num_words), 0u);
        const float* row = logits.data() + r * vocab;
        const int64_t best = std::max_element(row, row + vocab) - row;
        for (int k = 0; k < 5; ++k) {
          int64_t id = int64_t(rng() % uint32_t(vocab));
          if (id == best) id = (id + 1) % vocab;
          mask[size_t(id / 32)] |= 1u << (id % 32);
        }
        d.allowed = mask.data();
        d.num_allowed_words = num_words;
      }
      rows.push_back(d);
    }
    std::vector<int32_t> ids;
    ASSERT_TRUE(gpu_->sample_on_device(up(Tensor::from_f32(logits, {num_rows, vocab})), rows, &ids))
        << "vocab " << vocab << ": " << gpu_->take_error();
    ASSERT_EQ(ids.size(), size_t(num_rows));
    for (int64_t r = 0; r < num_rows; ++r) {
      SamplerRow sr;
      sr.params = &params[size_t(r)];
      if (!masks[size_t(r)].empty()) {
        sr.allowed = masks[size_t(r)].data();
        sr.num_allowed_words = num_words;
        const int32_t id = ids[size_t(r)];
        EXPECT_TRUE(masks[size_t(r)][size_t(id / 32)] >> (id % 32) & 1u) << "vocab " << vocab << " row " << r << " picked masked id " << id;
      }
      auto host = sampler.sample_row_with_uniform(logits.data() + r * vocab, vocab, sr, rows[size_t(r)].uniform);
      ASSERT_TRUE(host.ok()) << host.error().message;
      EXPECT_EQ(ids[size_t(r)], host.value().token_id) << "vocab " << vocab << " row " << r;
    }
  }
  std::vector<uint32_t> short_mask(1, ~0u);
  DeviceSampleRow row;
  row.allowed = short_mask.data();
  row.num_allowed_words = 1;  // 64 ids need 2 words
  std::vector<int32_t> ids;
  EXPECT_FALSE(gpu_->sample_on_device(up(Tensor::zeros(DType::f32, {1, 64})), {row}, &ids));
}

}  // namespace
}  // namespace troupe::cuda

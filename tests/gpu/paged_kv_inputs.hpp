#pragma once
// Random paged K/V for attention tests: sequences of {context_len, num_new_tokens}, blocks shuffled
// over a cache with 5 spare blocks, every cached position of every sequence filled with N(0, 1)
// values and every slot no sequence owns NaN (so a kernel reading past a context, or through a
// -1 table entry, shows), plus the step's host metadata.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "runtime/attention_metadata.hpp"
#include "runtime/tensor.hpp"

namespace troupe::cuda {

struct PagedKv {
  std::vector<float> k, v;                // [num_blocks, block_size, num_kv_heads, head_dim]
  std::vector<int64_t> shape;
  AttentionMetadata meta;                 // host
  std::vector<std::vector<int32_t>> tables;
  int64_t num_tokens = 0;
};

inline PagedKv make_paged_kv(const std::vector<std::pair<int32_t, int32_t>>& seqs, int64_t num_kv_heads,
                             int64_t head_dim, int64_t block_size, std::mt19937& rng) {
  PagedKv in;
  int64_t blocks_needed = 0;
  for (const auto& [context, num_new] : seqs) {
    blocks_needed += (context + block_size - 1) / block_size;
    in.num_tokens += num_new;
  }
  const int64_t num_blocks = blocks_needed + 5;
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  std::shuffle(ids.begin(), ids.end(), rng);
  const int64_t entry = num_kv_heads * head_dim;
  in.k.assign(size_t(num_blocks * block_size * entry), NAN);
  in.v.assign(in.k.size(), NAN);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ForwardBatch batch;
  size_t next = 0;
  for (const auto& [context, num_new] : seqs) {
    std::vector<int32_t> table;
    for (int64_t b = 0; b < (context + block_size - 1) / block_size; ++b) table.push_back(ids[next++]);
    for (int32_t p = 0; p < context; ++p) {
      const int64_t slot = int64_t(table[size_t(p / block_size)]) * block_size + p % block_size;
      for (int64_t i = 0; i < entry; ++i) {
        in.k[size_t(slot * entry + i)] = normal(rng);
        in.v[size_t(slot * entry + i)] = normal(rng);
      }
    }
    for (int32_t i = 0; i < num_new; ++i) {
      batch.positions.push_back(context - num_new + i);
      batch.token_ids.push_back(0);
    }
    in.tables.push_back(std::move(table));
  }
  for (size_t s = 0; s < seqs.size(); ++s) batch.seqs.push_back({seqs[s].second, seqs[s].first, &in.tables[s], true});
  auto meta = build_attention_metadata(batch, block_size, num_blocks);
  EXPECT_TRUE(meta.ok()) << meta.error().message;
  if (meta.ok()) in.meta = std::move(meta.value());
  in.shape = {num_blocks, block_size, num_kv_heads, head_dim};
  return in;
}

// max |gpu - ref| / (1 + |ref|); NaN (an output left unwritten, or a poisoned slot read) gives inf.
inline double attention_error(const Tensor& actual, const Tensor& ref) {
  const auto a = actual.to_f32_vector(), r = ref.to_f32_vector();
  if (a.size() != r.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(a[i]) - r[i]) / (1.0 + std::fabs(r[i])));
  }
  return worst;
}

// fp32 weights (any cache dtype; a bf16 cache is widened exactly): every kernel computes in fp32,
// so against the CPU on the same K/V values only the summation order differs (outputs are convex
// combinations of O(1) values).
constexpr double kAttentionF32Tolerance = 1e-4;
// bf16 weights: the prefill kernel rounds q, k, v and the probabilities to bf16 (relative error
// <= 2^-9 each): scores move by ~2^-9 * |q||k| * scale, outputs by a few 2^-9 of their scale.
constexpr double kAttentionBf16Tolerance = 2e-2;

}  // namespace troupe::cuda

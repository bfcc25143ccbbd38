// The tensor-core decode attention's in-kernel merge (kernels/attention_decode_mma.hpp: given arrival
// counters, the last partition of each (token, kv head) to finish merges the group's partitions):
// bit for bit the reduce kernel's output, and the counters left zero for the next launch.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention_decode.hpp"
#include "kernels/attention_decode_mma.hpp"
#include "kernels/host_bf16.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/gpu/paged_kv_inputs.hpp"

namespace troupe::cuda {
namespace {

template <class T>
T* upload(const std::vector<T>& host) {
  T* d = nullptr;
  if (cudaMalloc(reinterpret_cast<void**>(&d), std::max<size_t>(1, host.size()) * sizeof(T)) != cudaSuccess) return nullptr;
  if (!host.empty()) cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

template <class T>
std::vector<T> download(const T* d, size_t count) {
  std::vector<T> host(count);
  cudaMemcpy(host.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost);
  return host;
}

std::vector<int32_t> i32_values(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

// Llama-3-8B's heads at batch 1 (context 1,030: the partitions a step picks, and the most, 128, with
// most of them empty), groups 1 and 16, head_dim 64 and 256, 64 tokens of mixed contexts (items
// past the reduce kernel's grid of one token), block sizes 8 and 32; each split by the longest
// context and per token (a recorded graph's launch).
TEST(CudaDecodeAttention, LastPartitionMergesAsTheReduceKernelDoes) {
  TROUPE_REQUIRE_GPU();
  using namespace kernels;
  struct Case {
    std::vector<std::pair<int32_t, int32_t>> seqs;
    int64_t heads, kv_heads, head_dim, block_size, parts;  // parts 0: as the backend picks them
  };
  std::vector<std::pair<int32_t, int32_t>> batch64;
  for (int i = 0; i < 64; ++i) batch64.push_back({std::vector<int32_t>{1, 17, 1024, 3000}[size_t(i % 4)], 1});
  const std::vector<Case> cases = {{{{1030, 1}}, 32, 8, 128, 16, 0},
                                   {{{1030, 1}}, 32, 8, 128, 16, kDecodeMaxPartitions},
                                   {{{3000, 1}, {17, 1}}, 16, 1, 256, 16, 0},
                                   {{{1200, 1}, {1, 1}, {700, 1}}, 4, 4, 64, 8, 13},
                                   {batch64, 8, 2, 64, 32, 0}};
  int device = 0, num_sms = 1;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device);
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Case& c : cases) {
    for (const bool per_token : {false, true}) {
      SCOPED_TRACE("seqs " + std::to_string(c.seqs.size()) + " heads " + std::to_string(c.heads) + "/" +
                   std::to_string(c.kv_heads) + " head_dim " + std::to_string(c.head_dim) + " parts " +
                   std::to_string(c.parts) + (per_token ? " per-token split" : ""));
      const PagedKv in = make_paged_kv(c.seqs, c.kv_heads, c.head_dim, c.block_size, rng);
      const int64_t n = in.num_tokens, D = c.head_dim, max_blocks = in.meta.max_blocks_per_seq;
      std::vector<uint16_t> k(in.k.size()), v(in.v.size());
      for (size_t i = 0; i < k.size(); ++i) k[i] = kernels::host_f32_to_bf16(in.k[i]), v[i] = kernels::host_f32_to_bf16(in.v[i]);
      std::vector<float> q(size_t(n * c.heads * D));
      for (float& x : q) x = normal(rng);
      std::vector<int32_t> seq_of_token;
      for (size_t s = 0; s < c.seqs.size(); ++s) seq_of_token.push_back(int32_t(s));  // one new token each
      const int64_t context = per_token ? max_blocks * c.block_size : in.meta.max_context_len;
      const int64_t parts = c.parts > 0 ? c.parts : decode_mma_num_partitions(n, c.kv_heads, context, num_sms);
      const int64_t keys = per_token ? 0 : decode_partition_keys(context, parts);
      ASSERT_GT(parts, 1);
      const size_t out_count = size_t(n * c.heads * D), floats = size_t(decode_workspace_floats(n, c.heads, D, parts));
      float* d_q = upload(q);
      uint16_t *d_k = upload(k), *d_v = upload(v);
      int32_t* d_positions = upload(i32_values(in.meta.positions));
      int32_t* d_seq = upload(seq_of_token);
      int32_t* d_tables = upload(i32_values(in.meta.block_tables));
      int32_t* d_arrivals = upload(std::vector<int32_t>(size_t(n * c.kv_heads), 0));
      float* d_ws = upload(std::vector<float>(floats, NAN));
      float* d_reduced = upload(std::vector<float>(out_count, NAN));
      float* d_merged = upload(std::vector<float>(out_count, NAN));
      ASSERT_TRUE(d_q && d_k && d_v && d_positions && d_seq && d_tables && d_arrivals && d_ws && d_reduced && d_merged);
      auto run = [&](float* out, int32_t* arrivals) {
        return launch_decode_attention_mma(d_q, d_k, d_v, d_positions, d_seq, nullptr, n, d_tables, max_blocks,
                                           c.block_size, c.heads, c.kv_heads, D, 0.125f, parts, keys, d_ws, out,
                                           nullptr, arrivals);
      };
      EXPECT_EQ(run(d_reduced, nullptr), cudaSuccess);
      EXPECT_EQ(run(d_merged, d_arrivals), cudaSuccess);
      const std::vector<float> first = download(d_merged, out_count);
      EXPECT_EQ(run(d_merged, d_arrivals), cudaSuccess);  // again, on the counters the first left
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> reduced = download(d_reduced, out_count), merged = download(d_merged, out_count);
      int64_t differing = 0, finite = 0;
      for (size_t i = 0; i < out_count; ++i) {
        finite += std::isfinite(merged[i]);
        differing += std::memcmp(&reduced[i], &merged[i], 4) != 0 || std::memcmp(&first[i], &merged[i], 4) != 0;
      }
      EXPECT_EQ(differing, 0);
      EXPECT_EQ(finite, int64_t(out_count));
      for (int32_t a : download(d_arrivals, size_t(n * c.kv_heads))) EXPECT_EQ(a, 0);
      for (void* p : {static_cast<void*>(d_q), static_cast<void*>(d_k), static_cast<void*>(d_v),
                      static_cast<void*>(d_positions), static_cast<void*>(d_seq), static_cast<void*>(d_tables),
                      static_cast<void*>(d_arrivals), static_cast<void*>(d_ws), static_cast<void*>(d_reduced),
                      static_cast<void*>(d_merged)})
        cudaFree(p);
    }
  }
}

}  // namespace
}  // namespace troupe::cuda

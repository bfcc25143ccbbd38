// Op table rows: DeepSeek-V3's kernels. The absorbed MLA decode (fp32 and bf16 latent caches; the
// fixtures' dims, R1's and its tensor-parallel head counts; contexts 1, block_size - 1, not a
// multiple of the block size, past the split threshold; the partitions as the backend picks them,
// split per token, and a subset of the batch's tokens; the tensor-core kernels' rows at heads 1..128,
// batches 1..64, forced partitions, the 64-head kernel's tile edges), the expanded prefill (latent gather and
// the fp32 SIMT attention; the tensor-core one is backend_ops_mla_prefill.cpp's), the interleaved rope, the
// latent cache write, and the row scatters.
// The latent cache is built as the attention rows build theirs: blocks shuffled over a cache with
// spare blocks, every slot no sequence owns NaN, block tables padded with -1.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "kernels/host_bf16.hpp"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_latent.hpp"
#include "kernels/mla_prefill.hpp"
#include "kernels/scatter_rows.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

// fp32 kernels against the fp32-dot / fp64-softmax references: summation order over up to 3000
// keys and 576 dims, exp2f against exp: NMSE ~1e-12 (a bf16 cache is widened exactly on both sides).
constexpr double kMlaF32Tolerance = 1e-9;
// The tensor-core decode (bf16 cache at 512 + 64) rounds q_abs and the probabilities to bf16
// (rms relative 2^-9 / sqrt(3) each): scores move by ~2e-3 (scale * sqrt(576) * 1.1e-3), each
// weight by ~2e-3 relative, o_lat by ~2e-3 of its magnitude: NMSE ~5e-6. 1e-4 (rms relative error
// 1e-2) is the bar; a wrong fragment layout, mask or rescale gives NMSE ~1e-1..1.
constexpr double kMlaMmaTolerance = 1e-4;

template <class CacheT>
constexpr Elem cache_elem() {
  return std::is_same_v<CacheT, float> ? Elem::f32 : Elem::bf16;
}
template <class CacheT>
const char* cache_variant() {
  return std::is_same_v<CacheT, float> ? "f32 cache" : "bf16 cache";
}
template <class CacheT>
CacheT to_cache(float v) {
  if constexpr (std::is_same_v<CacheT, float>) {
    return v;
  } else {
    return host_f32_to_bf16(v);
  }
}

int num_sms() {
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms <= 0) sms = 132;
  return sms;
}

struct LatentCache {
  int64_t num_seqs = 0, max_blocks = 0, max_context = 0;
  int32_t* tables = nullptr;  // host [num_seqs, max_blocks]
  size_t count = 0;
};

// A paged latent cache of `contexts` (one sequence each): N(0, 1) entries, NaN elsewhere.
template <class CacheT>
LatentCache make_latent_cache(OpRun& r, const std::vector<int32_t>& contexts, int64_t entry, int64_t block_size,
                              std::mt19937& rng, CacheT** host) {
  LatentCache c;
  c.num_seqs = int64_t(contexts.size());
  int64_t blocks_needed = 0;
  for (int32_t ctx : contexts) {
    blocks_needed += (ctx + block_size - 1) / block_size;
    c.max_blocks = std::max<int64_t>(c.max_blocks, (ctx + block_size - 1) / block_size);
    c.max_context = std::max<int64_t>(c.max_context, ctx);
  }
  const int64_t num_blocks = blocks_needed + 5;
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.count = size_t(num_blocks * block_size * entry);
  *host = r.host<CacheT>(c.count, to_cache<CacheT>(NAN));
  c.tables = r.host<int32_t>(size_t(c.num_seqs * c.max_blocks), -1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  size_t next = 0;
  for (int64_t s = 0; s < c.num_seqs; ++s) {
    int32_t* table = c.tables + s * c.max_blocks;
    const int32_t ctx = contexts[size_t(s)];
    for (int64_t b = 0; b < (ctx + block_size - 1) / block_size; ++b) table[b] = ids[next++];
    for (int32_t p = 0; p < ctx; ++p) {
      const int64_t slot = int64_t(table[p / block_size]) * block_size + p % block_size;
      for (int64_t i = 0; i < entry; ++i) (*host)[slot * entry + i] = to_cache<CacheT>(normal(rng));
    }
  }
  return c;
}

struct MlaDecodeShape {
  std::vector<int32_t> contexts;  // one decode token per sequence
  int64_t num_heads, kv_lora, rope, qk_nope, block_size;
};

// by_max_context: partitions as the backend picks them (or `forced_parts` of the longest context's
// keys: shorter contexts then have empty partitions); per_token: by the table width, each token's
// context split evenly (a graph's); per_token_server: the same with the tables padded to a server's
// max_model_len of kServerModelLen (a graph's on `troupe serve`: many partitions, short contexts
// filling the first ones, the empty rest leaving their partial rows unwritten, poisoned here);
// subset: the odd tokens only.
enum class Split { by_max_context, per_token, per_token_server, subset };
constexpr int64_t kServerModelLen = 32768;

// `count` contexts cycling through 1 .. max_context (a batch of mixed lengths).
std::vector<int32_t> mixed_contexts(int count, int32_t max_context) {
  std::vector<int32_t> v;
  for (int k = 0; k < count; ++k) v.push_back(1 + int32_t((int64_t(k) * 97 + k * k * 13) % max_context));
  return v;
}

template <class CacheT>
OpCase mla_decode_case(MlaDecodeShape c, Split split, int64_t forced_parts = 0) {
  std::string dims = "ctx=";
  if (c.contexts.size() > 8) {
    dims += std::to_string(c.contexts.size()) + " mixed";
  } else {
    for (size_t i = 0; i < c.contexts.size(); ++i) dims += (i ? "," : "") + std::to_string(c.contexts[i]);
  }
  dims += " " + sizes({{"heads", c.num_heads}, {"lora", c.kv_lora}, {"rope", c.rope}, {"block", c.block_size}});
  if (split == Split::per_token) dims += " split=per-token";
  if (split == Split::per_token_server) dims += " split=per-token width=" + std::to_string(kServerModelLen);
  if (split == Split::subset) dims += " tokens=odd";
  if (forced_parts > 0) dims += " parts=" + std::to_string(forced_parts);
  const bool mma = mla_decode_kernel_for(c.kv_lora, c.rope, !std::is_same_v<CacheT, float>) == MlaDecodeKernel::mma_bf16;
  if (mma) dims += " (tensor cores)";
  return {"mla_decode", cache_variant<CacheT>(), dims, [=](std::mt19937& rng) {
            OpRun r;
            const int64_t entry = c.kv_lora + c.rope, H = c.num_heads, n = int64_t(c.contexts.size());
            CacheT* cache = nullptr;
            const LatentCache lc = make_latent_cache<CacheT>(r, c.contexts, entry, c.block_size, rng, &cache);
            int32_t* positions = r.host<int32_t>(size_t(n));
            int32_t* seq_of_token = r.host<int32_t>(size_t(n));
            for (int64_t t = 0; t < n; ++t) {
              positions[t] = c.contexts[size_t(t)] - 1;
              seq_of_token[t] = int32_t(t);
            }
            std::vector<int32_t> picked;  // the computed tokens
            for (int64_t t = 0; t < n; ++t)
              if (split != Split::subset || t % 2 == 1) picked.push_back(int32_t(t));
            const int64_t m = int64_t(picked.size());
            int32_t* tokens = r.host<int32_t>(size_t(m));
            std::copy(picked.begin(), picked.end(), tokens);
            const size_t q_count = size_t(m * H * entry), out_count = size_t(m * H * c.kv_lora);
            float* q = r.host<float>(q_count);
            fill_normal(q, q_count, rng);
            const float scale = 1.0f / std::sqrt(float(c.qk_nope + c.rope));
            const float* d_q = r.device(q, q_count);
            const CacheT* d_cache = r.device(cache, lc.count);
            const int32_t* d_pos = r.device(positions, size_t(n));
            const int32_t* d_seq = r.device(seq_of_token, size_t(n));
            // A server's tables: the same blocks, then -1 up to max_model_len.
            const bool server = split == Split::per_token_server;
            const int64_t max_blocks = server ? kServerModelLen / c.block_size : lc.max_blocks;
            int32_t* tables = lc.tables;
            if (server) {
              tables = r.host<int32_t>(size_t(lc.num_seqs * max_blocks), -1);
              for (int64_t s = 0; s < lc.num_seqs; ++s)
                std::copy(lc.tables + s * lc.max_blocks, lc.tables + (s + 1) * lc.max_blocks, tables + s * max_blocks);
            }
            const int32_t* d_tables = r.device(tables, size_t(lc.num_seqs * max_blocks));
            const int32_t* d_tokens = split == Split::subset ? r.device(tokens, size_t(m)) : nullptr;
            // Partitions as the backend picks them, or by the table width split per token (a graph's).
            const bool per_token = split == Split::per_token || server;
            const int64_t context = per_token ? max_blocks * c.block_size : lc.max_context;
            const int64_t parts = forced_parts > 0 ? forced_parts : mla_decode_num_partitions(m, H, context, num_sms());
            const int64_t keys = per_token ? 0 : mla_decode_partition_keys(context, parts);
            const int64_t floats = mla_decode_workspace_floats(m, H, c.kv_lora, parts);
            float* workspace = floats > 0 ? r.poisoned<float>(size_t(floats)) : nullptr;
            float* out = r.poisoned<float>(out_count);
            float* ref = r.host<float>(out_count);
            const int64_t bs = c.block_size, L = c.kv_lora, R = c.rope;
            r.launch = [=](cudaStream_t s) {
              return launch_mla_decode_f32(d_q, d_cache, d_pos, d_seq, d_tokens, m, d_tables, max_blocks, bs, H, L, R,
                                           scale, parts, keys, workspace, out, s);
            };
            r.reference = [=] {
              mla_decode_ref(q, cache, positions, seq_of_token, split == Split::subset ? tokens : nullptr, m,
                             tables, max_blocks, bs, H, L, R, scale, ref);
            };
            r.expect("o_lat", Elem::f32, out, ref, Elem::f32, out_count, mma ? kMlaMmaTolerance : kMlaF32Tolerance);
            // Bytes: each latent row once per token (the kernel's goal), q and o_lat once.
            double cache_bytes = 0;
            for (int32_t t : picked) cache_bytes += double(c.contexts[size_t(t)]) * entry * sizeof(CacheT);
            r.bytes = cache_bytes + double(q_count + out_count) * 4;
            return r;
          }};
}

template <class CacheT>
OpCase mla_gather_case(int32_t ctx, int64_t kv_lora, int64_t rope, int64_t block_size) {
  return {"mla_gather_latent", cache_variant<CacheT>(),
          sizes({{"ctx", ctx}, {"lora", kv_lora}, {"rope", rope}, {"block", block_size}}), [=](std::mt19937& rng) {
            OpRun r;
            CacheT* cache = nullptr;
            const LatentCache lc = make_latent_cache<CacheT>(r, {ctx}, kv_lora + rope, block_size, rng, &cache);
            const CacheT* d_cache = r.device(cache, lc.count);
            const int32_t* d_table = r.device(lc.tables, size_t(lc.max_blocks));
            float* latent = r.poisoned<float>(size_t(ctx * kv_lora));
            float* k_pe = r.poisoned<float>(size_t(ctx * rope));
            float* latent_ref = r.host<float>(size_t(ctx * kv_lora));
            float* k_pe_ref = r.host<float>(size_t(ctx * rope));
            const int32_t* table = lc.tables;
            r.launch = [=](cudaStream_t s) {
              return launch_mla_gather_latent_f32(d_cache, d_table, block_size, ctx, kv_lora, rope, latent, k_pe, s);
            };
            r.reference = [=] { mla_gather_latent_ref(cache, table, block_size, ctx, kv_lora, rope, latent_ref, k_pe_ref); };
            r.expect("latent", Elem::f32, latent, latent_ref, Elem::f32, size_t(ctx * kv_lora), kExact);
            r.expect("k_pe", Elem::f32, k_pe, k_pe_ref, Elem::f32, size_t(ctx * rope), kExact);
            r.bytes = double(ctx * (kv_lora + rope)) * (sizeof(CacheT) + 4);
            return r;
          }};
}

struct MlaPrefillShape {
  int64_t num_new, ctx, num_heads, nope, rope, v_dim;
};

OpCase mla_prefill_case(MlaPrefillShape c) {
  return {"mla_prefill_attention", "f32",
          sizes({{"new", c.num_new}, {"ctx", c.ctx}, {"heads", c.num_heads}, {"nope", c.nope}, {"rope", c.rope},
                 {"v", c.v_dim}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const int64_t qk = c.nope + c.rope, H = c.num_heads;
            const size_t q_count = size_t(c.num_new * H * qk), kv_count = size_t(c.ctx * H * (c.nope + c.v_dim));
            const size_t pe_count = size_t(c.ctx * c.rope), out_count = size_t(c.num_new * H * c.v_dim);
            float* q = r.host<float>(q_count);
            float* kv = r.host<float>(kv_count);
            float* k_pe = r.host<float>(pe_count);
            fill_normal(q, q_count, rng);
            fill_normal(kv, kv_count, rng);
            fill_normal(k_pe, pe_count, rng);
            const float* d_q = r.device(q, q_count);
            const float* d_kv = r.device(kv, kv_count);
            const float* d_pe = r.device(k_pe, pe_count);
            float* out = r.poisoned<float>(out_count);
            float* ref = r.host<float>(out_count);
            const float scale = 1.0f / std::sqrt(float(qk));
            r.launch = [=](cudaStream_t s) {
              return launch_mla_prefill_attention_f32(d_q, d_kv, d_pe, c.num_new, c.ctx, H, c.nope, c.rope, c.v_dim,
                                                      scale, out, s);
            };
            r.reference = [=] {
              mla_prefill_attention_ref(q, kv, k_pe, c.num_new, c.ctx, H, c.nope, c.rope, c.v_dim, scale, ref);
            };
            r.expect("out", Elem::f32, out, ref, Elem::f32, out_count, kMlaF32Tolerance);
            r.bytes = double(q_count + kv_count + pe_count + out_count) * 4;
            return r;
          }};
}

// inv_freq[i] = 10000^(-2i / rotary_dim) and a YaRN-like cos/sin factor; positions up to 4096.
float* make_inv_freq(OpRun& r, int64_t half) {
  float* f = r.host<float>(size_t(half));
  for (int64_t i = 0; i < half; ++i) f[i] = std::pow(10000.0f, -float(i) / float(half));
  return f;
}
constexpr float kRopeScale = 1.2079f;  // R1's yarn attention factor at factor 40, mscale 1

OpCase rope_interleaved_case(int64_t n, int64_t heads, int64_t head_dim, int64_t half) {
  return {"rope_interleaved", "f32", sizes({{"n", n}, {"heads", heads}, {"head_dim", head_dim}, {"rotary", 2 * half}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * heads * head_dim);
            float* x = r.host<float>(count);
            fill_normal(x, count, rng);
            int32_t* pos = r.host<int32_t>(size_t(n));
            for (int64_t t = 0; t < n; ++t) pos[t] = int32_t(rng() % 4096);
            const float* inv_freq = make_inv_freq(r, half);
            float* dx = r.device(x, count);
            const int32_t* d_pos = r.device(pos, size_t(n));
            const float* d_freq = r.device(inv_freq, size_t(half));
            r.launch = [=](cudaStream_t s) {
              return launch_rope_interleaved_f32(dx, d_pos, d_freq, n, heads, head_dim, half, kRopeScale, s);
            };
            r.reference = [=] { rope_interleaved_ref(x, pos, inv_freq, n, heads, head_dim, half, kRopeScale); };
            r.expect("x", Elem::f32, dx, x, Elem::f32, count, kF32Tolerance);
            r.bytes = double(count) * 8;
            return r;
          }};
}

// A cache write's inputs on the host and the device: kv_a (values of scale 3), the norm weight,
// positions up to 8,191, n distinct slots of a cache of num_slots entries, inv_freq.
struct LatentWrite {
  int64_t entry = 0, num_slots = 0;
  float *kv_a = nullptr, *weight = nullptr;
  int32_t *pos = nullptr, *slots = nullptr;
  const float* inv_freq = nullptr;
  const float *d_kv_a = nullptr, *d_weight = nullptr, *d_freq = nullptr;
  const int32_t *d_pos = nullptr, *d_slots = nullptr;
};
LatentWrite latent_write(OpRun& r, int64_t n, int64_t kv_lora, int64_t half, std::mt19937& rng) {
  LatentWrite in;
  in.entry = kv_lora + 2 * half;
  in.num_slots = (2 * n + 15) / 16 * 16 + 16;
  in.kv_a = r.host<float>(size_t(n * in.entry));
  fill_normal(in.kv_a, size_t(n * in.entry), rng, 3.0f);
  in.weight = r.host<float>(size_t(kv_lora));
  fill_normal(in.weight, size_t(kv_lora), rng);
  in.pos = r.host<int32_t>(size_t(n));
  for (int64_t t = 0; t < n; ++t) in.pos[t] = int32_t(rng() % 8192);
  std::vector<int32_t> all(static_cast<size_t>(in.num_slots));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  in.slots = r.host<int32_t>(size_t(n));
  std::copy(all.begin(), all.begin() + n, in.slots);
  in.inv_freq = make_inv_freq(r, half);
  in.d_kv_a = r.device(in.kv_a, size_t(n * in.entry));
  in.d_weight = r.device(in.weight, size_t(kv_lora));
  in.d_pos = r.device(in.pos, size_t(n));
  in.d_slots = r.device(in.slots, size_t(n));
  in.d_freq = r.device(in.inv_freq, size_t(half));
  return in;
}

template <class CacheT>
OpCase mla_write_latent_case(int64_t n, int64_t kv_lora, int64_t half) {
  return {"mla_write_latent", cache_variant<CacheT>(), sizes({{"n", n}, {"lora", kv_lora}, {"rotary", 2 * half}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const LatentWrite in = latent_write(r, n, kv_lora, half, rng);
            const size_t cache_count = size_t(in.num_slots * in.entry);
            CacheT* cache = r.poisoned<CacheT>(cache_count);
            CacheT* ref = r.host<CacheT>(cache_count, poison_value<CacheT>());
            constexpr float eps = 1e-6f;
            r.launch = [=](cudaStream_t s) {
              return launch_mla_write_latent_f32(in.d_kv_a, in.d_weight, eps, in.d_pos, in.d_freq, kRopeScale,
                                                 in.d_slots, n, kv_lora, half, cache, s);
            };
            r.reference = [=] {
              mla_write_latent_ref(in.kv_a, in.weight, eps, in.pos, in.inv_freq, kRopeScale, in.slots, n, kv_lora, half,
                                   ref);
            };
            constexpr double tolerance = std::is_same_v<CacheT, float> ? kF32Tolerance : kBf16Tolerance;
            r.expect("cache", cache_elem<CacheT>(), cache, ref, cache_elem<CacheT>(), cache_count, tolerance);
            r.bytes = double(n * in.entry) * (4 + sizeof(CacheT));
            return r;
          }};
}

// Both in one launch (launch_mla_rope_write_latent_f32): q's rope and the cache write against the
// two references, the same positions for both.
template <class CacheT>
OpCase mla_rope_write_latent_case(int64_t n, int64_t heads, int64_t head_dim, int64_t kv_lora, int64_t half) {
  return {"mla_rope_write_latent", cache_variant<CacheT>(),
          sizes({{"n", n}, {"heads", heads}, {"head_dim", head_dim}, {"lora", kv_lora}, {"rotary", 2 * half}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const size_t q_count = size_t(n * heads * head_dim);
            float* q = r.host<float>(q_count);
            fill_normal(q, q_count, rng);
            const LatentWrite in = latent_write(r, n, kv_lora, half, rng);
            float* d_q = r.device(q, q_count);
            const size_t cache_count = size_t(in.num_slots * in.entry);
            CacheT* cache = r.poisoned<CacheT>(cache_count);
            CacheT* ref = r.host<CacheT>(cache_count, poison_value<CacheT>());
            constexpr float eps = 1e-6f;
            r.launch = [=](cudaStream_t s) {
              return launch_mla_rope_write_latent_f32(d_q, heads, head_dim, in.d_kv_a, in.d_weight, eps, in.d_pos,
                                                      in.d_freq, kRopeScale, in.d_slots, n, kv_lora, half, cache, s);
            };
            r.reference = [=] {
              rope_interleaved_ref(q, in.pos, in.inv_freq, n, heads, head_dim, half, kRopeScale);
              mla_write_latent_ref(in.kv_a, in.weight, eps, in.pos, in.inv_freq, kRopeScale, in.slots, n, kv_lora, half,
                                   ref);
            };
            r.expect("q", Elem::f32, d_q, q, Elem::f32, q_count, kF32Tolerance);
            constexpr double tolerance = std::is_same_v<CacheT, float> ? kF32Tolerance : kBf16Tolerance;
            r.expect("cache", cache_elem<CacheT>(), cache, ref, cache_elem<CacheT>(), cache_count, tolerance);
            r.bytes = double(q_count) * 8 + double(n * in.entry) * (4 + sizeof(CacheT));
            return r;
          }};
}

// scatter: rows distinct, the rest of out keeps its values. add: distinct rows or each row twice.
OpCase scatter_case(bool add, bool repeated, int64_t num_rows, int64_t dim) {
  std::string dims = sizes({{"rows", num_rows}, {"dim", dim}});
  if (repeated) dims += " repeated";
  return {add ? "add_rows_scaled" : "scatter_rows", "f32", dims, [=](std::mt19937& rng) {
            OpRun r;
            const int64_t num_out = 2 * num_rows + 3;
            float* x = r.host<float>(size_t(num_rows * dim));
            fill_normal(x, size_t(num_rows * dim), rng);
            float* out = r.host<float>(size_t(num_out * dim));
            fill_normal(out, size_t(num_out * dim), rng);
            float* weights = r.host<float>(size_t(num_rows));
            fill_normal(weights, size_t(num_rows), rng);
            std::vector<int32_t> all(static_cast<size_t>(num_out));
            std::iota(all.begin(), all.end(), 0);
            std::shuffle(all.begin(), all.end(), rng);
            int32_t* rows = r.host<int32_t>(size_t(num_rows));
            for (int64_t i = 0; i < num_rows; ++i) rows[i] = all[size_t(repeated ? i / 2 : i)];
            const float* d_x = r.device(x, size_t(num_rows * dim));
            const int32_t* d_rows = r.device(rows, size_t(num_rows));
            const float* d_w = r.device(weights, size_t(num_rows));
            float* d_out = r.device(out, size_t(num_out * dim));
            r.launch = [=](cudaStream_t s) {
              return add ? launch_add_rows_scaled_f32(d_x, d_rows, d_w, d_out, num_rows, dim, !repeated, s)
                         : launch_scatter_rows_f32(d_x, d_rows, d_out, num_rows, dim, s);
            };
            r.reference = [=] {
              if (add) {
                add_rows_scaled_ref(x, rows, weights, out, num_rows, dim);
              } else {
                scatter_rows_ref(x, rows, out, num_rows, dim);
              }
            };
            // add: w * x + out fused or not (one rounding apart); scatter copies.
            r.expect("out", Elem::f32, d_out, out, Elem::f32, size_t(num_out * dim), add ? kF32Tolerance : kExact);
            r.bytes = double(num_rows * dim) * (add ? 12 : 8);
            return r;
          }};
}

// The fixtures' dims (H 4, kv_lora 32 / 136), R1's (H 128, 512 + 64) and its TP shards' heads.
std::vector<MlaDecodeShape> decode_shapes() {
  return {
      {{1}, 4, 32, 8, 16, 16},
      {{15, 40, 1}, 4, 32, 8, 16, 16},
      {{100, 3000}, 4, 136, 16, 32, 16},
      {{1}, 128, 512, 64, 128, 64},
      {{63}, 128, 512, 64, 128, 64},          // block_size - 1
      {{100, 1, 129}, 128, 512, 64, 128, 64},  // not multiples of the block size
      {{3000}, 128, 512, 64, 128, 64},         // past the split threshold
      {{700, 65, 3000, 17}, 16, 512, 64, 128, 16},
      {{1030, 2}, 8, 512, 64, 128, 64},
      {{300}, 1, 512, 64, 128, 64},
      {{77, 1200}, 100, 512, 64, 128, 16},  // two head tiles, the second partial
  };
}

}  // namespace

void add_mla_cases(std::vector<OpCase>& t) {
  for (const MlaDecodeShape& c : decode_shapes()) t.push_back(mla_decode_case<float>(c, Split::by_max_context));
  for (const MlaDecodeShape& c : decode_shapes()) t.push_back(mla_decode_case<uint16_t>(c, Split::by_max_context));
  t.push_back(mla_decode_case<uint16_t>({{3000, 1, 200}, 128, 512, 64, 128, 64}, Split::per_token));
  t.push_back(mla_decode_case<float>({{40, 5, 2500, 64}, 4, 32, 8, 16, 16}, Split::per_token));
  t.push_back(mla_decode_case<uint16_t>({{40, 5, 2500, 64, 9}, 16, 512, 64, 128, 64}, Split::subset));
  t.push_back(mla_decode_case<float>({{40, 5, 300, 64, 9}, 4, 136, 16, 32, 16}, Split::subset));
  // The tensor-core kernel (bf16 cache, 512 + 64): heads 1, 16, 20, 48, 64, 128 (row tiles of 16,
  // 32, 64, padded), contexts 1, 15, 17, 300, 4097 (partial key tiles), batches 1, 3, 64, block
  // sizes 16 and 64, partitions forced past the backend's pick (empty ones, ones shorter than a tile).
  const MlaDecodeShape tc[] = {
      {{1}, 1, 512, 64, 128, 16},
      {{15, 17, 1}, 16, 512, 64, 128, 16},
      {{17, 300, 15}, 20, 512, 64, 128, 64},
      {{300, 4097, 17}, 64, 512, 64, 128, 64},
      {{4097}, 128, 512, 64, 128, 16},
      {{1, 15, 4097}, 48, 512, 64, 128, 16},
      {mixed_contexts(64, 300), 128, 512, 64, 128, 64},
      {mixed_contexts(64, 200), 16, 512, 64, 128, 16},
  };
  for (const MlaDecodeShape& c : tc) t.push_back(mla_decode_case<uint16_t>(c, Split::by_max_context));
  t.push_back(mla_decode_case<uint16_t>({{300, 15, 4097}, 128, 512, 64, 128, 16}, Split::by_max_context, 7));
  t.push_back(mla_decode_case<uint16_t>({{17, 1, 300}, 1, 512, 64, 128, 64}, Split::by_max_context, 3));
  t.push_back(mla_decode_case<uint16_t>({{4097, 64}, 64, 512, 64, 128, 64}, Split::by_max_context, kMlaMaxPartitions));
  t.push_back(mla_decode_case<uint16_t>({{4097, 1, 17}, 16, 512, 64, 128, 16}, Split::per_token));
  t.push_back(mla_decode_case<uint16_t>({mixed_contexts(3, 300), 128, 512, 64, 128, 16}, Split::subset));
  // The 64-head kernel (mla_decode_mma64.cu: tiles of 33..64 heads, R1's 128 as two): contexts at the
  // 64-key tile edges, 1, the B 1 x 4096 point (one tile per partition), several sequences of
  // different lengths, block sizes 16 and 64, heads 33, 64, 96 (a 32-head second tile), partitions
  // forced past the pick (one shorter than a tile, empty ones). Tolerance kMlaMmaTolerance (NMSE).
  const MlaDecodeShape wide[] = {
      {{1, 64, 65, 127, 128, 129}, 128, 512, 64, 128, 16},
      {{4096}, 128, 512, 64, 128, 64},
      {{4095, 1, 1000, 63}, 128, 512, 64, 128, 64},
      {mixed_contexts(16, 700), 128, 512, 64, 128, 16},
      {{1}, 33, 512, 64, 128, 64},
      {{200, 77}, 64, 512, 64, 128, 16},
      {{129, 1, 1500}, 96, 512, 64, 128, 64},
  };
  for (const MlaDecodeShape& c : wide) t.push_back(mla_decode_case<uint16_t>(c, Split::by_max_context));
  t.push_back(mla_decode_case<uint16_t>({{65, 4000}, 128, 512, 64, 128, 16}, Split::by_max_context, 2));
  t.push_back(mla_decode_case<uint16_t>({{4000, 65, 1}, 128, 512, 64, 128, 64}, Split::by_max_context, 100));
  t.push_back(mla_decode_case<uint16_t>({{1000, 1, 333}, 128, 512, 64, 128, 16}, Split::per_token));
  // A server's graphs (tables kServerModelLen wide): R1 at batch 1 (a 1,000-key context over many
  // partitions of at least 64 keys), 16 heads (the 32-row kernel), a batch of 64, the SIMT kernel.
  t.push_back(mla_decode_case<uint16_t>({{1000}, 128, 512, 64, 128, 64}, Split::per_token_server));
  t.push_back(mla_decode_case<uint16_t>({{1, 200, 3000, 17}, 16, 512, 64, 128, 16}, Split::per_token_server));
  t.push_back(mla_decode_case<uint16_t>({mixed_contexts(64, 700), 128, 512, 64, 128, 64}, Split::per_token_server));
  t.push_back(mla_decode_case<float>({{40, 5, 2500, 64}, 4, 32, 8, 16, 16}, Split::per_token_server));
  for (int32_t ctx : {1, 63, 300}) {
    t.push_back(mla_gather_case<float>(ctx, 32, 8, 16));
    t.push_back(mla_gather_case<uint16_t>(ctx, 512, 64, 64));
  }
  const MlaPrefillShape prefill[] = {{19, 19, 4, 16, 8, 16}, {1, 1, 4, 16, 8, 16},     {45, 300, 4, 32, 16, 32},
                                     {99, 99, 16, 128, 64, 128}, {7, 130, 128, 128, 64, 128}};
  for (const MlaPrefillShape& c : prefill) t.push_back(mla_prefill_case(c));
  for (int64_t n : {1, 19, 99}) {
    t.push_back(rope_interleaved_case(n, 4, 24, 4));      // the fixtures' q: nope 16 + rope 8
    t.push_back(rope_interleaved_case(n, 128, 192, 32));  // R1's q: nope 128 + rope 64
    t.push_back(rope_interleaved_case(n, 3, 400, 100));   // 4 pairs a lane, the last ones partial
    t.push_back(rope_interleaved_case(n, 3, 400, 200));   // past 128 pairs: a block per (token, head)
    for (auto [lora, half] : {std::pair<int64_t, int64_t>{32, 4}, {136, 8}, {512, 32}}) {
      t.push_back(mla_write_latent_case<float>(n, lora, half));
      t.push_back(mla_write_latent_case<uint16_t>(n, lora, half));
    }
    // One launch for both: the fixtures' dims, R1's (rope blocks after n write blocks), 100 pairs.
    t.push_back(mla_rope_write_latent_case<float>(n, 4, 24, 32, 4));
    t.push_back(mla_rope_write_latent_case<uint16_t>(n, 128, 192, 512, 32));
    t.push_back(mla_rope_write_latent_case<uint16_t>(n, 3, 400, 136, 100));
  }
  for (int64_t dim : {7, 111, 7168}) {
    for (int64_t rows : {1, 19, 99}) {
      t.push_back(scatter_case(false, false, rows, dim));
      t.push_back(scatter_case(true, false, rows, dim));
      t.push_back(scatter_case(true, true, rows, dim));
    }
  }
}

}  // namespace troupe::backend_ops

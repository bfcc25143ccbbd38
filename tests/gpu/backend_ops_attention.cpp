// Op table rows: the four attention kernels (the paged_attention fallback, split-KV decode in fp32,
// split-KV decode on tensor cores over a bf16 cache, tensor-core prefill) over fp32, bf16 and fp8
// caches (the tensor-core decode: bf16 only), all against paged_attention_ref. An fp8 cache
// (--kv-cache-dtype fp8) holds e4m3(x / scale) with per-tensor K and V scales; the kernels fold
// k_scale into the score scale and v_scale into the output, the reference dequantizes first, so
// they differ by fp32 rounding only and keep the fp32 (or prefill) tolerance.
// Each row builds a random paged cache: sequences of {context_len, num_new_tokens}, their blocks
// shuffled over a cache with 5 spare blocks, every cached position filled with N(0, 1) values and
// every slot no sequence owns NaN (so a kernel reading past a context shows); block tables padded
// with -1 (as runtime/attention_metadata.cpp does).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <utility>

#include "kernels/attention_decode.hpp"
#include "kernels/attention_decode_mma.hpp"
#include "kernels/attention_prefill.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/paged_attention.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

// fp32 kernels against the fp32-dot / fp64-softmax reference: summation order over up to 2500 keys
// and __expf (a few ulp): NMSE ~1e-12.
constexpr double kAttentionF32Tolerance = 1e-9;
// The tensor-core decode rounds q (scaled) and P to bf16, rms relative error ~1.6e-3 each (K and V
// are the cache's bf16 values on both sides): scores move by ~1.6e-3, each key's weight by ~2.3e-3
// relative, so outputs by ~2.3e-3 of their scale: NMSE ~5e-6. A host emulation of the kernel's
// arithmetic (tiles, warps, partitions, bf16 q and P) against paged_attention_ref gave NMSE
// 3e-6..5e-6 and a worst (token, head) row of 1.6e-5 on these shapes; with the last 64-key tile of
// 1024 dropped, NMSE 6e-2 (worst row 0.2); without the running-max correction of O, 0.8. So NMSE
// 1e-4 (20x), and 1e-3 per row: one wrong row fails even where the NMSE over all rows hides it.
constexpr double kDecodeMmaTolerance = 1e-4;
constexpr double kDecodeMmaRowTolerance = 1e-3;
// The tensor-core prefill keeps kPrefillTolerance over the whole output and adds a per-row bound.
// A host emulation of its arithmetic (q * scale * log2 e, k, v and P rounded to bf16; 64-key tiles,
// 32 at head_dim 256; fp32 online softmax) against an fp64 reference on shapes like the rows below
// gave NMSE 3e-6..1e-5 and a worst (token, head) row of 2e-5..9e-5, 1.1e-4 at head_dim 16 (rows of
// 16 values); with each row's own (diagonal) key masked, NMSE 4e-3 and a worst row of 0.35 on the
// chunk starting at 255. So 1e-3 per row: a wrong mask, tile or row mapping confined to a few rows
// fails even where the NMSE over all rows hides it.
constexpr double kPrefillRowTolerance = 1e-3;

struct AttentionShape {
  std::vector<std::pair<int32_t, int32_t>> seqs;  // {context_len, num_new_tokens}
  int64_t num_heads, num_kv_heads, head_dim, block_size;
};

// decode_mma*: the tensor-core decode, with partitions by the longest context, per token (a recorded
// graph's launch), the most partitions (kDecodeMaxPartitions: partitions of a few keys, many
// empty), or over a `tokens` list of the batch's decode tokens (a mixed step's). *_server: per
// token over block tables as wide as a server's max_model_len (kServerModelLen), as `troupe serve`
// records its graphs: many partitions, each context filling only its first ones.
enum class Kernel {
  fallback,
  decode,
  decode_per_token_split,
  decode_per_token_server,
  prefill,
  prefill_wgmma,                // Hopper's kernel: 64 rows a CTA, 64-key tiles
  prefill_wgmma_rows128,        // 128 rows a CTA, 128-key tiles
  prefill_wgmma_rows128_keys64, // 128 rows, 64 keys
  decode_mma,
  decode_mma_per_token_split,
  decode_mma_max_partitions,
  decode_mma_listed,
  decode_mma_per_token_server
};
constexpr int64_t kServerModelLen = 32768;

bool is_server_width(Kernel kernel) {
  return kernel == Kernel::decode_per_token_server || kernel == Kernel::decode_mma_per_token_server;
}

bool is_decode_mma(Kernel kernel) {
  return kernel == Kernel::decode_mma || kernel == Kernel::decode_mma_per_token_split ||
         kernel == Kernel::decode_mma_max_partitions || kernel == Kernel::decode_mma_listed ||
         kernel == Kernel::decode_mma_per_token_server;
}

// Host and device inputs of one batch.
template <class CacheT>
struct Batch {
  int64_t n = 0, num_seqs = 0, max_blocks = 0, max_context = 0;
  float* q = nullptr;
  CacheT *k = nullptr, *v = nullptr;
  int32_t *positions = nullptr, *seq_of_token = nullptr, *tables = nullptr;
  std::vector<int32_t> query_start, context_lens;
  size_t cache_count = 0;
  float k_scale = 1.0f, v_scale = 1.0f;  // an fp8 cache's (not powers of two; N(0, 1) values fit)
  const float* d_q = nullptr;
  const CacheT *d_k = nullptr, *d_v = nullptr;
  const int32_t *d_positions = nullptr, *d_seq_of_token = nullptr, *d_tables = nullptr;
};

// table_blocks: the block tables' least width (-1 past each sequence's blocks).
template <class CacheT>
Batch<CacheT> make_batch(OpRun& r, const AttentionShape& c, std::mt19937& rng, int64_t table_blocks = 0) {
  Batch<CacheT> b;
  b.max_blocks = table_blocks;
  b.num_seqs = int64_t(c.seqs.size());
  int64_t blocks_needed = 0;
  for (const auto& [context, num_new] : c.seqs) {
    const int64_t blocks = (context + c.block_size - 1) / c.block_size;
    blocks_needed += blocks;
    b.max_blocks = std::max(b.max_blocks, blocks);
    b.max_context = std::max<int64_t>(b.max_context, context);
    b.n += num_new;
  }
  const int64_t num_blocks = blocks_needed + 5, entry = c.num_kv_heads * c.head_dim;
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.cache_count = size_t(num_blocks * c.block_size * entry);
  std::vector<float> k(b.cache_count, NAN), v(b.cache_count, NAN);
  b.tables = r.host<int32_t>(size_t(b.num_seqs * b.max_blocks), -1);
  b.positions = r.host<int32_t>(size_t(b.n));
  b.seq_of_token = r.host<int32_t>(size_t(b.n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  size_t next = 0;
  int64_t token = 0;
  b.query_start.push_back(0);
  for (int64_t s = 0; s < b.num_seqs; ++s) {
    const auto [context, num_new] = c.seqs[size_t(s)];
    int32_t* table = b.tables + s * b.max_blocks;
    for (int64_t i = 0; i < (context + c.block_size - 1) / c.block_size; ++i) table[i] = ids[next++];
    for (int32_t p = 0; p < context; ++p) {
      const int64_t slot = int64_t(table[p / c.block_size]) * c.block_size + p % c.block_size;
      for (int64_t i = 0; i < entry; ++i) {
        k[size_t(slot * entry + i)] = normal(rng);
        v[size_t(slot * entry + i)] = normal(rng);
      }
    }
    for (int32_t i = 0; i < num_new; ++i, ++token) {
      b.positions[token] = context - num_new + i;
      b.seq_of_token[token] = int32_t(s);
    }
    b.query_start.push_back(int32_t(token));
    b.context_lens.push_back(context);
  }
  b.k = r.host<CacheT>(b.cache_count);
  b.v = r.host<CacheT>(b.cache_count);
  for (size_t i = 0; i < b.cache_count; ++i) {
    if constexpr (std::is_same_v<CacheT, float>) {
      b.k[i] = k[i];
      b.v[i] = v[i];
    } else if constexpr (std::is_same_v<CacheT, uint8_t>) {  // NaN (unowned slots) stays NaN (0x7f)
      b.k_scale = 0.0191f;
      b.v_scale = 0.0173f;
      b.k[i] = host_f32_to_e4m3(k[i] / b.k_scale);
      b.v[i] = host_f32_to_e4m3(v[i] / b.v_scale);
    } else {
      b.k[i] = host_f32_to_bf16(k[i]);
      b.v[i] = host_f32_to_bf16(v[i]);
    }
  }
  const size_t q_count = size_t(b.n * c.num_heads * c.head_dim);
  b.q = r.host<float>(q_count);
  fill_normal(b.q, q_count, rng);
  b.d_q = r.device(b.q, q_count);
  b.d_k = r.device(b.k, b.cache_count);
  b.d_v = r.device(b.v, b.cache_count);
  b.d_positions = r.device(b.positions, size_t(b.n));
  b.d_seq_of_token = r.device(b.seq_of_token, size_t(b.n));
  b.d_tables = r.device(b.tables, size_t(b.num_seqs * b.max_blocks));
  return b;
}

int num_sms() {
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms <= 0) sms = 132;
  return sms;
}

bool supports(Kernel kernel, const AttentionShape& c) {
  const int64_t group = c.num_heads / c.num_kv_heads;
  switch (kernel) {
    case Kernel::fallback: return c.head_dim <= 256;
    case Kernel::decode:
    case Kernel::decode_per_token_split:
    case Kernel::decode_per_token_server: return decode_attention_supports(c.head_dim);
    case Kernel::prefill:
      return prefill_attention_supports(c.head_dim, group) &&
             std::any_of(c.seqs.begin(), c.seqs.end(), [](const auto& s) { return s.second > 1; });
    case Kernel::prefill_wgmma:
    case Kernel::prefill_wgmma_rows128:
    case Kernel::prefill_wgmma_rows128_keys64:
      return prefill_attention_wgmma_supports(c.head_dim, group) &&
             std::any_of(c.seqs.begin(), c.seqs.end(), [](const auto& s) { return s.second > 1; });
    case Kernel::decode_mma:
    case Kernel::decode_mma_per_token_split:
    case Kernel::decode_mma_max_partitions:
    case Kernel::decode_mma_listed:
    case Kernel::decode_mma_per_token_server:
      return decode_attention_mma_supports(c.num_heads, c.num_kv_heads, c.head_dim);
  }
  return false;
}

// "seqs=300/45,1030/1"; past 8 sequences their count and distinct entries: "seqs=64x{1/1,17/1}".
std::string shape_name(const AttentionShape& c) {
  std::vector<std::pair<int32_t, int32_t>> shown = c.seqs;
  if (c.seqs.size() > 8) {
    shown.clear();
    for (const auto& seq : c.seqs)
      if (std::find(shown.begin(), shown.end(), seq) == shown.end()) shown.push_back(seq);
  }
  std::string s = "seqs=";
  if (c.seqs.size() > 8) s += std::to_string(c.seqs.size()) + "x{";
  for (size_t i = 0; i < shown.size(); ++i)
    s += (i ? "," : "") + std::to_string(shown[i].first) + "/" + std::to_string(shown[i].second);
  if (c.seqs.size() > 8) s += "}";
  return s + " " +
         sizes({{"heads", c.num_heads}, {"kv_heads", c.num_kv_heads}, {"head_dim", c.head_dim},
                {"block", c.block_size}});
}

template <class CacheT>
OpCase attention_case(Kernel kernel, AttentionShape c) {
  const bool wgmma = kernel == Kernel::prefill_wgmma || kernel == Kernel::prefill_wgmma_rows128 ||
                     kernel == Kernel::prefill_wgmma_rows128_keys64;
  const int64_t cta_rows = kernel == Kernel::prefill_wgmma ? 64 : 128;
  const int64_t key_tile = kernel == Kernel::prefill_wgmma_rows128 ? 128 : 64;
  const bool prefill = kernel == Kernel::prefill || wgmma;
  const char* op = kernel == Kernel::fallback  ? "paged_attention"
                   : wgmma                     ? "attention_prefill_wgmma"
                   : kernel == Kernel::prefill ? "attention_prefill"
                   : is_decode_mma(kernel)     ? "attention_decode_mma"
                                               : "attention_decode";
  std::string dims = shape_name(c);
  if (kernel == Kernel::decode_per_token_split || kernel == Kernel::decode_mma_per_token_split)
    dims += " split=per-token";
  if (is_server_width(kernel)) dims += " split=per-token width=" + std::to_string(kServerModelLen);
  if (kernel == Kernel::decode_mma_max_partitions) dims += " split=max";
  if (kernel == Kernel::decode_mma_listed) dims += " tokens=decodes";
  if (wgmma) dims += " rows=" + std::to_string(cta_rows) + " keys=" + std::to_string(key_tile);
  const char* variant = std::is_same_v<CacheT, float>      ? "f32 cache"
                        : std::is_same_v<CacheT, uint16_t> ? "bf16 cache"
                                                           : "fp8 cache";
  return {op, variant, dims, [=](std::mt19937& rng) {
            OpRun r;
            const Batch<CacheT> b =
                make_batch<CacheT>(r, c, rng, is_server_width(kernel) ? kServerModelLen / c.block_size : 0);
            const size_t out_count = size_t(b.n * c.num_heads * c.head_dim);
            const float scale = 1.0f / std::sqrt(float(c.head_dim));
            float* out = r.poisoned<float>(out_count);
            float* ref = r.host<float>(out_count);
            const int64_t H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim, bs = c.block_size;
            double tolerance = kAttentionF32Tolerance;
            std::vector<bool> written(static_cast<size_t>(b.n), true);
            constexpr bool kFp8 = std::is_same_v<CacheT, uint8_t>;
            if (kernel == Kernel::fallback) {
              r.launch = [=](cudaStream_t s) {
                if constexpr (kFp8)
                  return launch_paged_attention_f32(b.d_q, b.d_k, b.d_v, b.d_positions, b.d_seq_of_token, b.d_tables,
                                                    b.max_blocks, bs, b.n, H, KV, D, scale, b.k_scale, b.v_scale, out,
                                                    s);
                else
                  return launch_paged_attention_f32(b.d_q, b.d_k, b.d_v, b.d_positions, b.d_seq_of_token, b.d_tables,
                                                    b.max_blocks, bs, b.n, H, KV, D, scale, out, s);
              };
            } else if (prefill) {
              const std::vector<int32_t> tiles = build_prefill_tiles(
                  b.query_start.data(), b.context_lens.data(), b.num_seqs, prefill_tokens_per_tile(D, H / KV));
              int32_t* h_tiles = r.host<int32_t>(tiles.size());
              std::copy(tiles.begin(), tiles.end(), h_tiles);
              const int32_t* d_tiles = r.device(h_tiles, tiles.size());
              const int64_t num_tiles = int64_t(tiles.size() / 3);
              std::fill(written.begin(), written.end(), false);
              for (size_t i = 0; i < tiles.size(); i += 3)
                for (int32_t t = tiles[i]; t < tiles[i + 1]; ++t) written[size_t(t)] = true;
              tolerance = kPrefillTolerance;
              r.launch = [=](cudaStream_t s) {
                if constexpr (std::is_same_v<CacheT, uint16_t>)
                  if (wgmma)
                    return launch_prefill_attention_wgmma(b.d_q, b.d_k, b.d_v, b.d_positions, d_tiles, num_tiles,
                                                          b.d_tables, b.max_blocks, bs, H, KV, D, scale, out, s,
                                                          cta_rows, key_tile);
                if constexpr (kFp8)
                  return launch_prefill_attention_bf16(b.d_q, b.d_k, b.d_v, b.d_positions, d_tiles, num_tiles,
                                                       b.d_tables, b.max_blocks, bs, H, KV, D, scale, b.k_scale,
                                                       b.v_scale, out, s);
                else
                  return launch_prefill_attention_bf16(b.d_q, b.d_k, b.d_v, b.d_positions, d_tiles, num_tiles,
                                                       b.d_tables, b.max_blocks, bs, H, KV, D, scale, out, s);
              };
            } else if (is_decode_mma(kernel)) {
              if constexpr (std::is_same_v<CacheT, uint16_t>) {
                // The listed variant computes only the sequences with one new token, through the
                // `tokens` list, as the backend's mixed steps do; the other rows stay poisoned.
                const bool per_token =
                    kernel == Kernel::decode_mma_per_token_split || kernel == Kernel::decode_mma_per_token_server;
                int64_t m = b.n, context = per_token ? b.max_blocks * bs : b.max_context;
                const int32_t* d_list = nullptr;
                if (kernel == Kernel::decode_mma_listed) {
                  std::vector<int32_t> list;
                  context = 0;
                  for (int64_t s = 0; s < b.num_seqs; ++s) {
                    if (c.seqs[size_t(s)].second != 1) continue;
                    list.push_back(b.query_start[size_t(s)]);
                    context = std::max<int64_t>(context, c.seqs[size_t(s)].first);
                  }
                  m = int64_t(list.size());
                  int32_t* h_list = r.host<int32_t>(list.size());
                  std::copy(list.begin(), list.end(), h_list);
                  d_list = r.device(h_list, list.size());
                  std::fill(written.begin(), written.end(), false);
                  for (int32_t t : list) written[size_t(t)] = true;
                }
                const int64_t parts = kernel == Kernel::decode_mma_max_partitions
                                          ? kDecodeMaxPartitions
                                          : decode_mma_num_partitions(m, KV, context, num_sms());
                const int64_t keys = per_token ? 0 : decode_partition_keys(context, parts);
                const int64_t floats = decode_workspace_floats(m, H, D, parts);
                float* workspace = floats > 0 ? r.poisoned<float>(size_t(floats)) : nullptr;
                tolerance = kDecodeMmaTolerance;
                r.launch = [=](cudaStream_t s) {
                  return launch_decode_attention_mma(b.d_q, b.d_k, b.d_v, b.d_positions, b.d_seq_of_token, d_list, m,
                                                     b.d_tables, b.max_blocks, bs, H, KV, D, scale, parts, keys,
                                                     workspace, out, s);
                };
              }
            } else {
              // Partitions as the backend picks them: by the longest context, or (as a recorded
              // graph does) by the table width with each token's own context split evenly.
              const bool per_token =
                  kernel == Kernel::decode_per_token_split || kernel == Kernel::decode_per_token_server;
              const int64_t context = per_token ? b.max_blocks * bs : b.max_context;
              const int64_t parts = decode_num_partitions(b.n, H, KV, D, context, num_sms());
              const int64_t keys = per_token ? 0 : decode_partition_keys(context, parts);
              const int64_t floats = decode_workspace_floats(b.n, H, D, parts);
              float* workspace = floats > 0 ? r.poisoned<float>(size_t(floats)) : nullptr;
              r.launch = [=](cudaStream_t s) {
                if constexpr (kFp8)
                  return launch_decode_attention_f32(b.d_q, b.d_k, b.d_v, b.d_positions, b.d_seq_of_token, nullptr,
                                                     b.n, b.d_tables, b.max_blocks, bs, H, KV, D, scale, b.k_scale,
                                                     b.v_scale, parts, keys, workspace, out, s);
                else
                  return launch_decode_attention_f32(b.d_q, b.d_k, b.d_v, b.d_positions, b.d_seq_of_token, nullptr,
                                                     b.n, b.d_tables, b.max_blocks, bs, H, KV, D, scale, parts, keys,
                                                     workspace, out, s);
              };
            }
            r.reference = [=] {
              if constexpr (kFp8)
                paged_attention_ref(b.q, b.k, b.v, b.positions, b.seq_of_token, b.tables, b.max_blocks, bs, b.n, H,
                                    KV, D, scale, b.k_scale, b.v_scale, ref);
              else
                paged_attention_ref(b.q, b.k, b.v, b.positions, b.seq_of_token, b.tables, b.max_blocks, bs, b.n, H,
                                    KV, D, scale, ref);
              for (int64_t t = 0; t < b.n; ++t)  // rows the kernel must leave alone stay poisoned
                if (!written[size_t(t)]) std::fill(ref + t * H * D, ref + (t + 1) * H * D, NAN);
            };
            if (is_decode_mma(kernel) || prefill) {
              r.expect_rows("out", Elem::f32, out, ref, Elem::f32, out_count, tolerance, size_t(D),
                            prefill ? kPrefillRowTolerance : kDecodeMmaRowTolerance);
            } else {
              r.expect("out", Elem::f32, out, ref, Elem::f32, out_count, tolerance);
            }
            // Bytes: q and out once, K and V of every (token, kv head) once (what a GQA-grouped
            // kernel reads at best).
            double kv_bytes = 0;
            for (int64_t t = 0; t < b.n; ++t) kv_bytes += double(b.positions[t] + 1) * KV * D * 2 * sizeof(CacheT);
            r.bytes = double(out_count) * 8 + kv_bytes;
            return r;
          }};
}

// Sequences of 1, 19, 99, 333, 989 new tokens, chunks starting mid-sequence, GQA groups 1/3/4/8/64/128
// with odd head counts, head_dim 16/32/64/128/256 and 48 (only the fallback takes it), block sizes
// 8-32, prefill and decode sequences in one batch, decode contexts long enough to split.
const std::vector<AttentionShape>& f32_cache_shapes() {
  static const std::vector<AttentionShape> shapes = {
      {{{1, 1}}, 7, 7, 64, 16},
      {{{19, 19}}, 12, 3, 128, 16},
      {{{99, 99}}, 8, 1, 64, 16},
      {{{989, 989}}, 8, 2, 128, 16},
      {{{300, 45}}, 7, 7, 128, 16},    // a chunk starting at position 255
      {{{1030, 1}}, 32, 8, 128, 16},   // batch-1 decode: split into partitions
      {{{2500, 1}, {700, 1}, {129, 1}}, 12, 3, 128, 16},  // partitions empty for the shorter ones
      {{{1200, 1}, {150, 99}, {19, 19}, {1030, 1}, {69, 5}}, 12, 3, 64, 8},
      {{{77, 77}, {40, 2}, {3, 3}}, 4, 2, 16, 32},
      {{{70, 70}, {530, 1}}, 4, 4, 256, 16},
      {{{33, 17}, {200, 130}}, 64, 1, 32, 16},  // group 64: two tokens per query tile
      {{{45, 45}}, 128, 1, 16, 16},             // group 128: one token per query tile
      {{{50, 50}, {90, 1}}, 6, 2, 48, 16},      // head_dim 48: the fallback only
      {{{333, 333}}, 8, 2, 256, 16},            // head_dim 256 over 11 key tiles of 32
  };
  return shapes;
}

const std::vector<AttentionShape>& bf16_cache_shapes() {
  static const std::vector<AttentionShape> shapes = {
      {{{1, 1}}, 8, 8, 64, 16},
      {{{19, 19}}, 16, 4, 128, 16},
      {{{99, 99}}, 32, 4, 64, 16},
      {{{989, 989}}, 8, 1, 128, 16},
      {{{300, 45}, {1030, 1}}, 8, 2, 128, 16},
      {{{70, 70}, {530, 1}}, 4, 4, 256, 16},
      {{{129, 19}, {40, 1}}, 16, 2, 256, 16},
      {{{45, 45}, {17, 1}}, 4, 1, 16, 8},
      {{{33, 17}, {200, 130}}, 8, 2, 32, 32},
      {{{2500, 1}, {700, 1}, {129, 1}}, 12, 3, 128, 16},
      {{{1200, 1}, {150, 99}, {19, 19}, {1030, 1}, {69, 5}}, 32, 4, 64, 8},
      {{{50, 50}, {90, 1}}, 6, 2, 48, 16},
      // Long causal prompts: Llama-3-8B's heads (query tiles of 32 tokens over 9 key tiles) beside
      // a chunk starting at 255; head_dim 256 (11 key tiles of 32); head_dim 64, group 8, block 32.
      {{{520, 520}, {300, 45}}, 32, 8, 128, 16},
      {{{333, 333}}, 8, 2, 256, 16},
      {{{400, 400}, {90, 17}}, 16, 2, 64, 32},
  };
  return shapes;
}

// n decode sequences (one new token each) whose contexts cycle through `contexts`.
std::vector<std::pair<int32_t, int32_t>> decodes(int n, std::initializer_list<int32_t> contexts) {
  std::vector<std::pair<int32_t, int32_t>> seqs;
  for (int i = 0; i < n; ++i) seqs.push_back({contexts.begin()[size_t(i) % contexts.size()], 1});
  return seqs;
}

// The tensor-core decode (bf16 cache): Llama-3-8B's attention (32 q heads, 8 kv heads, head_dim
// 128) at batch 1 and 64; groups 1, 3, 4, 8, 16; head_dim 64, 128, 256; contexts 1, 17, 1024, 3000
// (tiles cut short; partitions empty for the shorter contexts of a batch); block sizes 8, 16, 32.
const std::vector<AttentionShape>& mma_shapes() {
  static const std::vector<AttentionShape> shapes = {
      {{{1, 1}}, 8, 8, 64, 16},                                   // group 1, one key
      {{{17, 1}}, 32, 8, 128, 16},                                // group 4
      {{{1024, 1}}, 32, 8, 128, 16},                              // Llama-3-8B, batch 1
      {{{3000, 1}}, 8, 1, 64, 16},                                // group 8
      {{{17, 1}}, 16, 2, 128, 32},                                // group 8, block 32
      {{{3000, 1}}, 4, 4, 128, 16},                               // group 1
      {{{1024, 1}}, 16, 1, 64, 8},                                // group 16, block 8
      {{{1, 1}, {700, 1}, {129, 1}}, 12, 4, 128, 16},             // group 3
      {{{1, 1}}, 16, 1, 128, 16},                                 // group 16, one key
      {{{530, 1}, {70, 1}}, 8, 2, 256, 16},                       // head_dim 256
      {{{3000, 1}, {17, 1}}, 16, 1, 256, 16},                     // head_dim 256, group 16
      {{{300, 45}, {1030, 1}, {17, 1}, {1, 1}}, 32, 8, 128, 16},  // beside a prefill chunk
      {decodes(64, {1024}), 32, 8, 128, 16},                      // Llama-3-8B, batch 64
      {decodes(64, {1, 17, 1024, 3000}), 8, 2, 64, 16},           // batch 64, group 4
      {decodes(64, {3000, 1024, 17, 1}), 16, 2, 128, 16},         // batch 64, group 8
      {decodes(64, {17, 3000, 1, 1024}), 4, 4, 64, 32},           // batch 64, group 1
  };
  return shapes;
}

}  // namespace

void add_attention_cases(std::vector<OpCase>& t) {
  // decode_attention_supports and prefill_attention_supports are host functions: listing the
  // table needs no GPU.
  // The per-token split (a recorded graph's launch) only on decode-only batches, as graphs hold.
  auto wanted = [](Kernel kernel, const AttentionShape& c) {
    const bool decode_only = std::all_of(c.seqs.begin(), c.seqs.end(), [](const auto& s) { return s.second == 1; });
    const bool per_token = kernel == Kernel::decode_per_token_split || kernel == Kernel::decode_per_token_server;
    return supports(kernel, c) && (!per_token || decode_only);
  };
  for (Kernel kernel : {Kernel::fallback, Kernel::decode, Kernel::decode_per_token_split,
                        Kernel::decode_per_token_server, Kernel::prefill}) {
    for (const AttentionShape& c : f32_cache_shapes())
      if (wanted(kernel, c)) t.push_back(attention_case<float>(kernel, c));
    for (const AttentionShape& c : bf16_cache_shapes())
      if (wanted(kernel, c)) t.push_back(attention_case<uint16_t>(kernel, c));
    // The fp8 cache over the bf16 shapes: every kernel, grouped and not, split and not.
    for (const AttentionShape& c : bf16_cache_shapes())
      if (wanted(kernel, c)) t.push_back(attention_case<uint8_t>(kernel, c));
  }
  // Hopper's prefill kernel (bf16 cache, head_dim 128), its three variants.
  for (Kernel kernel : {Kernel::prefill_wgmma, Kernel::prefill_wgmma_rows128, Kernel::prefill_wgmma_rows128_keys64})
    for (const AttentionShape& c : bf16_cache_shapes())
      if (wanted(kernel, c)) t.push_back(attention_case<uint16_t>(kernel, c));
  // The tensor-core decode: the per-token split on decode-only batches, the most partitions on
  // the small ones, the token list where a prefill chunk shares the batch.
  for (const AttentionShape& c : mma_shapes()) {
    const bool decode_only = std::all_of(c.seqs.begin(), c.seqs.end(), [](const auto& s) { return s.second == 1; });
    if (!supports(Kernel::decode_mma, c)) continue;
    t.push_back(attention_case<uint16_t>(Kernel::decode_mma, c));
    if (decode_only) t.push_back(attention_case<uint16_t>(Kernel::decode_mma_per_token_split, c));
    if (decode_only) t.push_back(attention_case<uint16_t>(Kernel::decode_mma_per_token_server, c));
    if (c.seqs.size() <= 4) t.push_back(attention_case<uint16_t>(Kernel::decode_mma_max_partitions, c));
    if (!decode_only) t.push_back(attention_case<uint16_t>(Kernel::decode_mma_listed, c));
  }
}

}  // namespace troupe::backend_ops

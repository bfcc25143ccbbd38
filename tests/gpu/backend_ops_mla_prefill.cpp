// Op table rows: the tensor-core MLA prefills (kernels/mla_prefill_mma.cu, mla_prefill_wgmma.cu) at R1's head dims
// (nope 128, rope 64, v 128) against mla_prefill_attention_ref per sequence. Awkward sizes: a single
// token (ctx 1), contexts 63, 65, 1000 (not multiples of the 64-key / 64-row tiles), chunks after a
// cached context (ctx > num_new, keys of earlier chunks visible to every new row), a one-token
// chunk, and several sequences in one launch whose keys sit back to back in kv with tokens between
// the sequences that no sequence owns (their output rows must stay NaN).
#include <cuda_runtime_api.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/mla_prefill.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

// q, K, V and P rounded to bf16 (kv and k_pe are bf16 on both sides, so q and P only): rms
// relative error ~1.6e-3 each, NMSE ~1e-5 measured scale; kPrefillTolerance (2e-4) is the bar a
// wrong mask, key offset or rescale (NMSE 1e-2..1) crosses.
constexpr double kMlaPrefillMmaTolerance = kPrefillTolerance;
constexpr int64_t kNope = 128, kRope = 64, kV = 128, kQk = kNope + kRope;

struct PrefillSeq {
  int64_t ctx, num_new;
};

// key_tile 0: the mma.sync kernel; 64 or 128: the wgmma kernel with that many keys per K/V tile.
OpCase mla_prefill_mma_case(int64_t tile_rows, int64_t key_tile, int64_t num_heads, std::vector<PrefillSeq> seqs) {
  std::string dims = "heads=" + std::to_string(num_heads) + " seqs(ctx/new)=";
  for (size_t i = 0; i < seqs.size(); ++i)
    dims += (i ? "," : "") + std::to_string(seqs[i].ctx) + "/" + std::to_string(seqs[i].num_new);
  const std::string variant = "bf16 kv, " + std::to_string(tile_rows) + "-row tiles" +
                              (key_tile ? ", " + std::to_string(key_tile) + "-key tiles" : "");
  return {key_tile ? "mla_prefill_wgmma" : "mla_prefill_mma", variant, dims, [=](std::mt19937& rng) {
            OpRun r;
            const int64_t H = num_heads, gap = seqs.size() > 1 ? 1 : 0;  // unowned tokens between sequences
            std::vector<MlaPrefillSeq> plan;
            int64_t num_tokens = 0, num_keys = 0;
            for (const PrefillSeq& s : seqs) {
              plan.push_back({num_tokens, s.num_new, s.ctx, num_keys});
              num_tokens += s.num_new + gap;
              num_keys += s.ctx;
            }
            const std::vector<int32_t> tiles = mla_prefill_tiles(plan, tile_rows);
            const int64_t num_tiles = int64_t(tiles.size()) / 4;
            const size_t q_count = size_t(num_tokens * H * kQk), kv_count = size_t(num_keys * H * (kNope + kV));
            const size_t pe_count = size_t(num_keys * kRope), out_count = size_t(num_tokens * H * kV);
            float* q = r.host<float>(q_count);
            fill_normal(q, q_count, rng);
            uint16_t* kv = r.host<uint16_t>(kv_count);
            uint16_t* k_pe = r.host<uint16_t>(pe_count);
            fill_bf16_normal(kv, kv_count, rng);
            fill_bf16_normal(k_pe, pe_count, rng);
            int32_t* tiles_host = r.host<int32_t>(tiles.size());
            std::copy(tiles.begin(), tiles.end(), tiles_host);
            const float* d_q = r.device(q, q_count);
            const uint16_t* d_kv = r.device(kv, kv_count);
            const uint16_t* d_pe = r.device(k_pe, pe_count);
            const int32_t* d_tiles = r.device(tiles_host, tiles.size());
            float* out = r.poisoned<float>(out_count);
            float* ref = r.host<float>(out_count, poison_value<float>());
            float* kv_f = r.host<float>(kv_count);
            float* pe_f = r.host<float>(pe_count);
            const float scale = 0.1352f;  // R1: 1 / sqrt(192) * yarn mscale^2
            r.launch = [=](cudaStream_t s) {
              return key_tile ? launch_mla_prefill_wgmma(d_q, d_kv, d_pe, d_tiles, num_tiles, tile_rows, H, kNope, kRope,
                                                         kV, scale, out, s, key_tile)
                              : launch_mla_prefill_mma(d_q, d_kv, d_pe, d_tiles, num_tiles, tile_rows, H, kNope, kRope,
                                                       kV, scale, out, s);
            };
            r.reference = [=] {
              for (size_t i = 0; i < kv_count; ++i) kv_f[i] = host_bf16_to_f32(kv[i]);
              for (size_t i = 0; i < pe_count; ++i) pe_f[i] = host_bf16_to_f32(k_pe[i]);
              for (const MlaPrefillSeq& s : plan)
                mla_prefill_attention_ref(q + s.q_begin * H * kQk, kv_f + s.key_begin * H * (kNope + kV),
                                          pe_f + s.key_begin * kRope, s.num_new, s.ctx, H, kNope, kRope, kV, scale,
                                          ref + s.q_begin * H * kV);
            };
            r.expect("out", Elem::f32, out, ref, Elem::f32, out_count, kMlaPrefillMmaTolerance);
            r.bytes = double(q_count + out_count) * 4 + double(kv_count + pe_count) * 2;
            return r;
          }};
}

}  // namespace

void add_mla_prefill_cases(std::vector<OpCase>& t) {
  const std::vector<std::pair<int64_t, std::vector<PrefillSeq>>> shapes = {
      {128, {{1, 1}}},                                              // a single token
      {128, {{63, 63}}},                                            // one partial tile
      {16, {{65, 65}}},                                             // a tile and one row / key
      {8, {{1000, 1000}}},                                          // 16 (8) tiles, the last partial
      {8, {{1000, 100}}},                                           // a chunk after 900 cached keys
      {16, {{65, 1}, {300, 37}}},                                   // one-token and short chunks
      {16, {{65, 65}, {1, 1}, {200, 3}, {130, 64}, {129, 129}, {64, 64}}},  // six sequences
      {128, {{128, 128}, {700, 70}}},                               // all R1 heads, two sequences
      {1, {{4097, 130}}},                                           // a long cached context, one head
  };
  // {tile rows, key tile}: the mma.sync kernel's two (key tile 0), the wgmma kernel's three.
  const std::vector<std::pair<int64_t, int64_t>> variants = {{64, 0}, {128, 0}, {64, 64}, {128, 64}, {128, 128}};
  for (const auto& [rows, keys] : variants)
    for (const auto& [heads, seqs] : shapes) t.push_back(mla_prefill_mma_case(rows, keys, heads, seqs));
}

}  // namespace troupe::backend_ops

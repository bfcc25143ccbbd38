// Op table rows: the absorbed MLA decode's weight-streaming products (kernels/mla_absorb.hpp) against
// their fp64 references: 1, 3, 5 and 8 tokens; R1's heads (128) and a tensor-parallel shard's (16);
// nope 128, 64, 200 and 256 (partial steps of the kernels' row loop); kv_lora 512, 256, 136 (a
// partial column block) and 8; v_dim 128, 20 (a partial row block) and 1; rope 64, 0; a subset of
// a step's tokens (read from and written to their rows, the others left as they were: NaN).
// Inputs: normal values, every 3rd an exact bf16 tie, so rounding q and o_lat other than to nearest
// even (or not at all) moves the sums by ~2^-9 of their terms.
#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/host_bf16.hpp"
#include "kernels/mla_absorb.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

// fp32 sums of products that are exact in fp32 (bf16 x bf16), against fp64 sums of the same
// products: relative error ~1e-7 per output, NMSE ~1e-13 over an output (kF32Tolerance, 1e-10,
// is what a wrongly rounded input, ~1e-6, or one wrong element crosses). Per (token, head) row,
// 1e-8: rows as short as one value can be a sum that nearly cancels; a wrong row is off by O(1).
constexpr double kRowTolerance = 1e-8;

struct AbsorbShape {
  int64_t n, heads, nope, rope, kv_lora, v_dim;
  std::vector<int32_t> tokens = {};  // empty: tokens 0 .. n-1; else n rows of a step of num_rows tokens
  int64_t num_rows = 0;
};

std::string absorb_sizes(const AbsorbShape& c) {
  std::string s = sizes({{"n", c.n}, {"heads", c.heads}, {"nope", c.nope}, {"rope", c.rope}, {"lora", c.kv_lora},
                         {"v", c.v_dim}});
  if (!c.tokens.empty()) s += " tokens of " + std::to_string(c.num_rows);
  return s;
}

// Normal values; every 3rd one's low 16 bits set to 0x8000: exactly halfway between two bf16.
void fill_with_ties(float* x, size_t count, std::mt19937& rng) {
  fill_normal(x, count, rng);
  for (size_t i = 0; i < count; i += 3) x[i] = std::bit_cast<float>((std::bit_cast<uint32_t>(x[i]) & 0xffff0000u) | 0x8000u);
}

// kv_b [H * (nope + v), kv_lora], N(0, 1 / kv_lora) as bf16.
uint16_t* make_weight(OpRun& r, const AbsorbShape& c, std::mt19937& rng, size_t* count) {
  *count = size_t(c.heads * (c.nope + c.v_dim) * c.kv_lora);
  uint16_t* w = r.host<uint16_t>(*count);
  fill_bf16_normal(w, *count, rng, 1.0f / std::sqrt(float(c.kv_lora)));
  return w;
}

OpCase absorb_case(AbsorbShape c) {
  return {"mla_absorb_q", "bf16 W", absorb_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const int64_t rows = c.tokens.empty() ? c.n : c.num_rows, qk = c.nope + c.rope, entry = c.kv_lora + c.rope;
            const size_t q_count = size_t(rows * c.heads * qk), out_count = size_t(c.n * c.heads * entry);
            float* q = r.host<float>(q_count);
            fill_with_ties(q, q_count, rng);
            size_t w_count = 0;
            const uint16_t* w = make_weight(r, c, rng, &w_count);
            const int32_t* tokens = nullptr;
            const int32_t* d_tokens = nullptr;
            if (!c.tokens.empty()) {
              int32_t* t = r.host<int32_t>(c.tokens.size());
              std::copy(c.tokens.begin(), c.tokens.end(), t);
              tokens = t;
              d_tokens = r.device(tokens, c.tokens.size());
            }
            const float* d_q = r.device(q, q_count);
            const uint16_t* d_w = r.device(w, w_count);
            float* q_abs = r.poisoned<float>(out_count);
            double* ref = r.host<double>(out_count);
            r.launch = [=](cudaStream_t s) {
              return launch_mla_absorb_q_bf16(d_q, d_tokens, d_w, q_abs, c.n, c.heads, c.nope, c.rope, c.kv_lora,
                                              c.v_dim, s);
            };
            r.reference = [=] {
              mla_absorb_q_bf16_ref(q, tokens, w, ref, c.n, c.heads, c.nope, c.rope, c.kv_lora, c.v_dim);
            };
            r.expect_rows("q_abs", Elem::f32, q_abs, ref, Elem::f64, out_count, kF32Tolerance, size_t(entry),
                          kRowTolerance);
            r.bytes = double(c.heads * c.nope * c.kv_lora) * 2 + double(c.n * c.heads) * (qk + entry) * 4;
            return r;
          }};
}

OpCase unabsorb_case(AbsorbShape c) {
  return {"mla_unabsorb_out", "bf16 W", absorb_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const int64_t rows = c.tokens.empty() ? c.n : c.num_rows;
            const size_t o_count = size_t(c.n * c.heads * c.kv_lora), out_count = size_t(rows * c.heads * c.v_dim);
            float* o_lat = r.host<float>(o_count);
            fill_with_ties(o_lat, o_count, rng);
            size_t w_count = 0;
            const uint16_t* w = make_weight(r, c, rng, &w_count);
            const int32_t* tokens = nullptr;
            const int32_t* d_tokens = nullptr;
            if (!c.tokens.empty()) {
              int32_t* t = r.host<int32_t>(c.tokens.size());
              std::copy(c.tokens.begin(), c.tokens.end(), t);
              tokens = t;
              d_tokens = r.device(tokens, c.tokens.size());
            }
            const float* d_o = r.device(o_lat, o_count);
            const uint16_t* d_w = r.device(w, w_count);
            float* out = r.poisoned<float>(out_count);
            double* ref = r.host<double>(out_count, NAN);  // rows not computed stay NaN
            r.launch = [=](cudaStream_t s) {
              return launch_mla_unabsorb_out_bf16(d_o, d_tokens, d_w, out, c.n, c.heads, c.nope, c.kv_lora, c.v_dim, s);
            };
            r.reference = [=] {
              mla_unabsorb_out_bf16_ref(o_lat, tokens, w, ref, c.n, c.heads, c.nope, c.kv_lora, c.v_dim);
            };
            r.expect_rows("out", Elem::f32, out, ref, Elem::f64, out_count, kF32Tolerance, size_t(c.v_dim),
                          kRowTolerance);
            r.bytes = double(c.heads * c.v_dim * c.kv_lora) * 2 + double(c.n * c.heads) * (c.kv_lora + c.v_dim) * 4;
            return r;
          }};
}

std::vector<AbsorbShape> absorb_shapes() {
  return {
      {1, 128, 128, 64, 512, 128},  // R1
      {3, 128, 128, 64, 512, 128},
      {8, 128, 128, 64, 512, 128},
      {1, 16, 128, 64, 512, 128},  // R1 at tensor parallel 8
      {8, 16, 128, 64, 512, 128},
      {3, 128, 64, 64, 512, 128},  // nope != v
      {1, 16, 128, 64, 256, 128},  // kv_lora 256
      {8, 16, 64, 32, 256, 64},
      {5, 4, 16, 8, 32, 16},       // the fixtures' dims
      {2, 4, 32, 16, 136, 20},     // a partial column block and a partial row block
      {5, 3, 200, 0, 64, 40},      // no rope; nope past one step of rows, not a multiple of 8
      {2, 2, 256, 64, 512, 256},   // the largest nope
      {1, 5, 1, 2, 8, 1},          // one row, one 16-byte piece, one output row
      {3, 16, 128, 64, 512, 128, {6, 1, 4}, 7},  // a step's decode tokens among its prefills
      {8, 4, 32, 16, 136, 32, {0, 2, 3, 5, 8, 9, 10, 12}, 13},
  };
}

}  // namespace

void add_mla_absorb_cases(std::vector<OpCase>& t) {
  for (const AbsorbShape& c : absorb_shapes()) t.push_back(absorb_case(c));
  for (const AbsorbShape& c : absorb_shapes()) t.push_back(unabsorb_case(c));
}

}  // namespace troupe::backend_ops

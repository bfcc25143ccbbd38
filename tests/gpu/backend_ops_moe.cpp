// Op table rows: the MoE kernels (kernels/moe_routing, moe_align, moe_combine). Shapes: the
// DeepSeek fixture (E=8), E=8 in 2 groups, R1 (E=256, 8 groups, keep 4, k=8), E=64 without
// groups, E=384 (Kimi-K2-like, 12 experts a lane); tokens 1, 3, 257 (and 4096 for the grouping).
// Router ids are bit-identical; logits are continuous random values (no two distinct scores within
// the ulp the device's expf may differ by), with forced exact ties, which order the same on both
// sides.
#include <algorithm>
#include <numeric>
#include <type_traits>

#include "kernels/host_bf16.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_routing.hpp"
#include "kernels/moe_segment_quant.hpp"
#include "kernels/fp8_quant.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

constexpr int64_t kMoeTokens[] = {1, 3, 257};

// How a row's router inputs are skewed.
enum class Skew {
  none,        // N(0, 2) logits, small N(0, 0.1) biases
  one_expert,  // expert 5's bias +100: every token takes it (the hot-expert case)
  ties,        // every 4th token's logits all equal; elsewhere duplicated logits across groups
  negative,    // biases around -1: every choice score negative (the -inf mask is below all)
};

const char* skew_name(Skew s) {
  switch (s) {
    case Skew::one_expert: return " hot=5";
    case Skew::ties: return " ties";
    case Skew::negative: return " neg";
    default: return "";
  }
}

OpCase moe_route_case(int64_t m, int32_t experts, int32_t groups, int32_t topk_group, int32_t k, Skew skew = Skew::none,
                      bool norm = true) {
  const std::string dims = sizes({{"m", m}, {"E", experts}, {"groups", groups}, {"topk_group", topk_group}, {"k", k}}) +
                           skew_name(skew) + (norm ? "" : " no-norm");
  return {"moe_route", "f32", dims, [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(m * experts), slots = size_t(m * k);
            float* logits = r.host<float>(count);
            float* bias = r.host<float>(size_t(experts));
            fill_normal(logits, count, rng, 2.0f);
            fill_normal(bias, size_t(experts), rng, 0.1f);
            if (skew == Skew::one_expert) bias[5] = 100.0f;
            if (skew == Skew::negative)
              for (int32_t e = 0; e < experts; ++e) bias[e] -= 1.0f;
            if (skew == Skew::ties) {
              for (int64_t t = 0; t < m; ++t) {
                float* row = logits + t * experts;
                if (t % 4 == 0) std::fill(row, row + experts, row[0]);
                row[experts - 1] = row[0];                  // last group's last expert = expert 0
                if (experts >= 4) row[experts / 2] = row[1];
              }
              bias[experts - 1] = bias[0];
              if (experts >= 4) bias[experts / 2] = bias[1];
            }
            const MoeRouteParams p{experts, groups, topk_group, k, norm, 2.5f};
            const float* d_logits = r.device(logits, count);
            const float* d_bias = r.device(bias, size_t(experts));
            int32_t* ids = r.poisoned<int32_t>(slots);
            float* weights = r.poisoned<float>(slots);
            int32_t* ref_ids = r.host<int32_t>(slots);
            float* ref_weights = r.host<float>(slots);
            r.launch = [=](cudaStream_t s) { return launch_moe_route_f32(d_logits, d_bias, ids, weights, m, p, s); };
            r.reference = [=] { moe_route_ref(logits, bias, ref_ids, ref_weights, m, p); };
            r.expect("ids", Elem::i32, ids, ref_ids, Elem::i32, slots, kExact);
            r.expect("weights", Elem::f32, weights, ref_weights, Elem::f32, slots, kF32Tolerance);
            r.bytes = double(count * 4 + size_t(experts) * 4 + slots * 8);
            return r;
          }};
}

// Per token, k distinct experts (a partial shuffle); `hot` >= 0 puts every slot on that expert
// instead, `foreign` makes every 7th slot -1 (another rank's expert).
void fill_topk_ids(int32_t* ids, int64_t m, int32_t k, int32_t experts, std::mt19937& rng, int32_t hot = -1,
                   bool foreign = false) {
  std::vector<int32_t> perm(static_cast<size_t>(experts));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t t = 0; t < m; ++t) {
    for (int32_t i = 0; i < k; ++i) {
      std::uniform_int_distribution<int32_t> pick(i, experts - 1);
      std::swap(perm[size_t(i)], perm[size_t(pick(rng))]);
      ids[t * k + i] = hot >= 0 ? hot : perm[size_t(i)];
    }
  }
  if (foreign)
    for (int64_t s = 3; s < m * k; s += 7) ids[s] = -1;
}

OpCase moe_align_case(int64_t m, int32_t experts, int32_t k, int32_t pad_to, int32_t hot = -1, bool foreign = false) {
  std::string dims = sizes({{"m", m}, {"E", experts}, {"k", k}, {"pad_to", pad_to}});
  if (hot >= 0) dims += " hot=" + std::to_string(hot);
  if (foreign) dims += " foreign";
  return {"moe_align", "i32", dims, [=](std::mt19937& rng) {
            OpRun r;
            const int64_t slots = m * k, capacity = moe_align_capacity(slots, experts, pad_to);
            int32_t* ids = r.host<int32_t>(size_t(slots));
            fill_topk_ids(ids, m, k, experts, rng, hot, foreign);
            const int32_t* d_ids = r.device(ids, size_t(slots));
            int32_t* counts = r.poisoned<int32_t>(size_t(experts));
            int32_t* offsets = r.poisoned<int32_t>(size_t(experts + 1));
            int32_t* sorted = r.poisoned<int32_t>(size_t(capacity));
            int32_t* pos = r.poisoned<int32_t>(size_t(slots));
            int32_t* ref_counts = r.host<int32_t>(size_t(experts));
            int32_t* ref_offsets = r.host<int32_t>(size_t(experts + 1));
            int32_t* ref_sorted = r.host<int32_t>(size_t(capacity));
            int32_t* ref_pos = r.host<int32_t>(size_t(slots));
            r.launch = [=](cudaStream_t s) {
              return launch_moe_align(d_ids, slots, experts, pad_to, counts, offsets, sorted, capacity, pos, s);
            };
            r.reference = [=] {
              moe_align_ref(ids, slots, experts, pad_to, ref_counts, ref_offsets, ref_sorted, capacity, ref_pos);
            };
            r.expect("counts", Elem::i32, counts, ref_counts, Elem::i32, size_t(experts), kExact);
            r.expect("offsets", Elem::i32, offsets, ref_offsets, Elem::i32, size_t(experts + 1), kExact);
            r.expect("sorted_slots", Elem::i32, sorted, ref_sorted, Elem::i32, size_t(capacity), kExact);
            r.expect("slot_pos", Elem::i32, pos, ref_pos, Elem::i32, size_t(slots), kExact);
            r.bytes = double(slots * 8 + capacity * 4 + int64_t(experts) * 8);
            return r;
          }};
}

// A layout from random ids (moe_align_ref), for the gather and combine rows.
struct Layout {
  int64_t slots = 0, capacity = 0;
  int32_t* sorted = nullptr;   // host [capacity]
  int32_t* pos = nullptr;      // host [slots]
  int32_t* offsets = nullptr;  // host [experts + 1]
};

Layout make_layout(OpRun& r, int64_t m, int32_t k, int32_t experts, int32_t pad_to, bool foreign, std::mt19937& rng,
                   int32_t hot = -1) {
  Layout l;
  l.slots = m * k;
  l.capacity = moe_align_capacity(l.slots, experts, pad_to);
  int32_t* ids = r.host<int32_t>(size_t(l.slots));
  fill_topk_ids(ids, m, k, experts, rng, hot, foreign);
  int32_t* counts = r.host<int32_t>(size_t(experts));
  l.offsets = r.host<int32_t>(size_t(experts + 1));
  l.sorted = r.host<int32_t>(size_t(l.capacity));
  l.pos = r.host<int32_t>(size_t(l.slots));
  moe_align_ref(ids, l.slots, experts, pad_to, counts, l.offsets, l.sorted, l.capacity, l.pos);
  return l;
}

template <class T>
OpCase moe_gather_case(int64_t m, int64_t hidden, int32_t pad_to) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  return {"moe_gather", kF32 ? "f32" : "bf16", sizes({{"m", m}, {"hidden", hidden}, {"k", 8}, {"pad_to", pad_to}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const int32_t k = 8, experts = 256;
            const Layout l = make_layout(r, m, k, experts, pad_to, false, rng);
            const size_t count = size_t(m * hidden), out_count = size_t(l.capacity * hidden);
            T* x = r.host<T>(count);
            if constexpr (kF32) fill_normal(x, count, rng);
            else fill_bf16_normal(x, count, rng);
            const T* dx = r.device(x, count);
            const int32_t* d_sorted = r.device(l.sorted, size_t(l.capacity));
            T* out = r.poisoned<T>(out_count);
            T* ref = r.host<T>(out_count, poison_value<T>());  // padding rows stay poisoned
            const int32_t* sorted = l.sorted;
            const int64_t positions = l.capacity;
            r.launch = [=](cudaStream_t s) {
              if constexpr (kF32) return launch_moe_gather_f32(dx, d_sorted, out, positions, k, hidden, s);
              else return launch_moe_gather_bf16(dx, d_sorted, out, positions, k, hidden, s);
            };
            r.reference = [=] { moe_gather_ref(x, sorted, ref, positions, k, hidden); };
            const Elem e = kF32 ? Elem::f32 : Elem::bf16;
            r.expect("x_perm", e, out, ref, e, out_count, kExact);
            r.bytes = double(2 * size_t(l.slots * hidden) * sizeof(T) + size_t(l.capacity) * 4);
            return r;
          }};
}

// y_perm of T; `with_shared`: the shared experts' output added; every 7th slot foreign (-1).
template <class T>
OpCase moe_combine_case(int64_t m, int64_t hidden, bool with_shared) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  std::string dims = sizes({{"m", m}, {"hidden", hidden}, {"k", 8}});
  dims += with_shared ? " shared" : " no-shared";
  return {"moe_combine", kF32 ? "f32" : "bf16->f32", dims + " foreign", [=](std::mt19937& rng) {
            OpRun r;
            const int32_t k = 8, experts = 256;
            const Layout l = make_layout(r, m, k, experts, 4, true, rng);
            const size_t count = size_t(m * hidden), y_count = size_t(l.capacity * hidden);
            T* y = r.host<T>(y_count);
            if constexpr (kF32) fill_normal(y, y_count, rng);
            else fill_bf16_normal(y, y_count, rng);
            float* weights = r.host<float>(size_t(l.slots));
            fill_normal(weights, size_t(l.slots), rng, 0.5f);
            float* shared = with_shared ? r.host<float>(count) : nullptr;
            if (shared) fill_normal(shared, count, rng);
            const T* d_y = r.device(y, y_count);
            const int32_t* d_pos = r.device(l.pos, size_t(l.slots));
            const float* d_w = r.device(weights, size_t(l.slots));
            const float* d_shared = shared ? r.device(shared, count) : nullptr;
            float* out = r.poisoned<float>(count);
            float* ref = r.host<float>(count);
            const int32_t* pos = l.pos;
            r.launch = [=](cudaStream_t s) {
              if constexpr (kF32) return launch_moe_combine_f32(d_y, d_pos, d_w, d_shared, out, m, k, hidden, s);
              else return launch_moe_combine_bf16(d_y, d_pos, d_w, d_shared, out, m, k, hidden, s);
            };
            r.reference = [=] { moe_combine_ref(y, pos, weights, shared, ref, m, k, hidden); };
            r.expect("out", Elem::f32, out, ref, Elem::f32, count, kExact);  // one fma per term, same order
            r.bytes = double(size_t(l.slots * hidden) * sizeof(T) + count * (with_shared ? 8 : 4) + size_t(l.slots) * 8);
            return r;
          }};
}


// The grouped prefill's quantized rows (moe_segment_quant.hpp) over a layout without padding: x's
// rows gathered in expert order, or silu * up of a gate_up, quantized per row and 128 channels,
// each expert's scales as its own [nkb, count] block. `hot` >= 0: every slot on that expert (the
// others empty); `foreign`: every 7th slot another rank's (dropped). gather_quant is the formula of
// fp8_quant bit for bit; silu_quant's device expf may move an activation one bf16 ulp, and then its
// e4m3 code one step: NMSE bounds (a wrong segment or row is O(1)).
template <class T>
OpCase moe_gather_quant_case(int64_t m, int64_t hidden, int32_t experts, int32_t hot, bool foreign) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  std::string dims = sizes({{"m", m}, {"hidden", hidden}, {"E", experts}, {"k", 8}});
  if (hot >= 0) dims += " hot=" + std::to_string(hot);
  if (foreign) dims += " foreign";
  return {"moe_gather_quant", kF32 ? "f32->e4m3" : "bf16->e4m3", dims, [=](std::mt19937& rng) {
            OpRun r;
            const int32_t k = 8;
            const Layout l = make_layout(r, m, k, experts, 1, foreign, rng, hot);
            const int64_t rows = l.offsets[experts], blocks = kernels::fp8_num_blocks(hidden);
            const size_t count = size_t(m * hidden), out_count = size_t(rows * hidden);
            const size_t scale_count = size_t(blocks * rows);
            T* x = r.host<T>(count);
            if constexpr (kF32) fill_normal(x, count, rng, 3.0f);
            else fill_bf16_normal(x, count, rng);
            const T* dx = r.device(x, count);
            const int32_t* d_sorted = r.device(l.sorted, size_t(std::max<int64_t>(rows, 1)));
            const int32_t* d_offsets = r.device(l.offsets, size_t(experts + 1));
            uint8_t* q = r.poisoned<uint8_t>(out_count);
            float* scale = r.poisoned<float>(scale_count);
            float* gathered = r.host<float>(out_count);
            uint8_t* ref_q = r.host<uint8_t>(out_count);
            float* ref_scale = r.host<float>(scale_count);
            const int32_t* sorted = l.sorted;
            const int32_t* offsets = l.offsets;
            r.launch = [=](cudaStream_t s) {
              return launch_moe_gather_quant(dx, d_sorted, k, d_offsets, experts, q, scale, rows, hidden, s);
            };
            r.reference = [=] {
              for (int64_t p = 0; p < rows; ++p)
                for (int64_t c = 0; c < hidden; ++c) {
                  const T v = x[int64_t(sorted[p] / k) * hidden + c];
                  if constexpr (kF32) gathered[p * hidden + c] = v;
                  else gathered[p * hidden + c] = kernels::host_bf16_to_f32(v);
                }
              moe_segment_quant_ref(gathered, offsets, experts, ref_q, ref_scale, rows, hidden);
            };
            r.expect("x_fp8", Elem::e4m3, q, ref_q, Elem::e4m3, out_count, kExact);
            r.expect("x_scale", Elem::f32, scale, ref_scale, Elem::f32, scale_count, kExact);
            r.bytes = double(size_t(rows * hidden) * (sizeof(T) + 1) + scale_count * 4 + size_t(rows) * 4);
            return r;
          }};
}

OpCase moe_silu_quant_case(int64_t m, int64_t inter, int32_t experts, int32_t hot) {
  std::string dims = sizes({{"m", m}, {"inter", inter}, {"E", experts}, {"k", 8}});
  if (hot >= 0) dims += " hot=" + std::to_string(hot);
  return {"moe_silu_quant", "bf16->e4m3", dims, [=](std::mt19937& rng) {
            OpRun r;
            const Layout l = make_layout(r, m, 8, experts, 1, false, rng, hot);
            const int64_t rows = l.offsets[experts], blocks = kernels::fp8_num_blocks(inter);
            const size_t in_count = size_t(rows * 2 * inter), out_count = size_t(rows * inter);
            const size_t scale_count = size_t(blocks * rows);
            uint16_t* gate_up = r.host<uint16_t>(in_count);
            fill_bf16_normal(gate_up, in_count, rng, 2.0f);
            const uint16_t* d_gate_up = r.device(gate_up, in_count);
            const int32_t* d_offsets = r.device(l.offsets, size_t(experts + 1));
            uint8_t* q = r.poisoned<uint8_t>(out_count);
            float* scale = r.poisoned<float>(scale_count);
            uint8_t* ref_q = r.host<uint8_t>(out_count);
            float* ref_scale = r.host<float>(scale_count);
            const int32_t* offsets = l.offsets;
            r.launch = [=](cudaStream_t s) {
              return launch_moe_silu_quant(d_gate_up, d_offsets, experts, q, scale, rows, inter, s);
            };
            r.reference = [=] { moe_silu_quant_ref(gate_up, offsets, experts, ref_q, ref_scale, rows, inter); };
            r.expect("act_fp8", Elem::e4m3, q, ref_q, Elem::e4m3, out_count, 1e-4);
            r.expect("act_scale", Elem::f32, scale, ref_scale, Elem::f32, scale_count, kBf16Tolerance);
            r.bytes = double(in_count * 2 + out_count + scale_count * 4);
            return r;
          }};
}
}  // namespace

// The grouped experts' rows (backend_ops_moe_experts.cpp).
void add_moe_expert_cases(std::vector<OpCase>& table);

void add_moe_cases(std::vector<OpCase>& t) {
  for (int64_t m : kMoeTokens) {
    t.push_back(moe_route_case(m, 8, 4, 2, 2));     // the DeepSeek fixture
    t.push_back(moe_route_case(m, 8, 2, 1, 2));     // E=8 in 2 groups
    t.push_back(moe_route_case(m, 256, 8, 4, 8));   // R1
    t.push_back(moe_route_case(m, 64, 1, 1, 6, Skew::none, false));
    t.push_back(moe_route_case(m, 384, 1, 1, 8));   // 12 experts a lane (the 16-wide kernel)
    t.push_back(moe_route_case(m, 256, 8, 4, 8, Skew::one_expert));
    t.push_back(moe_route_case(m, 256, 8, 4, 8, Skew::ties));
    t.push_back(moe_route_case(m, 8, 2, 1, 2, Skew::ties));
    t.push_back(moe_route_case(m, 256, 8, 4, 8, Skew::negative));
  }
  t.push_back(moe_route_case(257, 16, 8, 1, 4));  // k > the kept experts: -inf ones, lowest first
  t.push_back(moe_route_case(257, 24, 24, 3, 2));  // one expert a group
  for (int64_t m : {64, 65})  // the last size of the block-per-token kernel, the first of the warp one
    t.push_back(moe_route_case(m, 256, 8, 4, 8, Skew::ties));
  t.push_back(moe_route_case(3, 512, 16, 4, 32));  // the largest block, k at its limit
  t.push_back(moe_route_case(3, 24, 24, 3, 2));
  t.push_back(moe_route_case(1, 16, 8, 1, 4));

  for (int64_t m : {1, 3, 257, 4096}) {
    t.push_back(moe_align_case(m, 256, 8, 1));
    t.push_back(moe_align_case(m, 256, 8, 128));
  }
  for (int64_t m : kMoeTokens) {
    t.push_back(moe_align_case(m, 8, 2, 16));
    t.push_back(moe_align_case(m, 256, 8, 16, 5));           // every slot on expert 5
    t.push_back(moe_align_case(m, 256, 8, 4, -1, true));     // other ranks' experts dropped
  }
  t.push_back(moe_align_case(257, 512, 8, 1));

  for (int64_t m : kMoeTokens) {
    for (int64_t hidden : {111, 7168}) t.push_back(moe_gather_case<float>(m, hidden, 1));
    for (int64_t hidden : {1001, 7168}) t.push_back(moe_gather_case<uint16_t>(m, hidden, m == 257 ? 16 : 1));
  }
  for (int64_t m : kMoeTokens) {
    for (int64_t hidden : {111, 7168}) {
      t.push_back(moe_combine_case<float>(m, hidden, true));
      t.push_back(moe_combine_case<uint16_t>(m, hidden, m != 3));
    }
  }
  for (int64_t m : {3, 257, 600}) {
    t.push_back(moe_gather_quant_case<uint16_t>(m, 7168, 257, -1, false));  // R1 + the shared expert
    t.push_back(moe_gather_quant_case<float>(m, 320, 16, -1, m != 3));        // a partial 128-block
    t.push_back(moe_silu_quant_case(m, 2048, 257, -1));
    t.push_back(moe_silu_quant_case(m, 192, 16, -1));
  }
  t.push_back(moe_gather_quant_case<uint16_t>(257, 7168, 257, 5, false));  // every slot on expert 5
  t.push_back(moe_silu_quant_case(257, 2048, 257, 200));
  // Widths not a multiple of 8: the element-by-element path (16-byte loads need k % 8 == 0).
  t.push_back(moe_gather_quant_case<uint16_t>(257, 1001, 16, -1, true));
  t.push_back(moe_gather_quant_case<float>(257, 300, 16, -1, false));
  t.push_back(moe_silu_quant_case(257, 100, 16, -1));
  t.push_back(moe_silu_quant_case(257, 320, 16, -1));  // 16-byte loads, an odd 3 blocks
  add_moe_expert_cases(t);
}

}  // namespace troupe::backend_ops

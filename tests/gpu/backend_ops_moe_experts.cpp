// Op table rows: the grouped FP8 experts of decode batches (kernels/moe_grouped_gemv): the local
// ids (with the shared expert's slot), the active expert list, the scaled gather, the fused gate/up + silu and the down GEMV. Tokens 1, 8, 64, 256
// (top-8 of E experts); awkward sizes: k and inter not multiples of 128 (partial scale blocks) or
// of 16 (byte loads), experts with no token (E much larger than the slots), every slot on one
// expert (more than one 32-token pass over its weights), other ranks' experts (expert parallel).
// The one-token launches (kernels/moe_rows_gemv: moe_rows_*) on the same references: R1's shapes,
// K with a partial last 512-byte chunk, inter off the 128-row scale grid (and not a multiple of 4),
// each variant (warps sharing or owning items, rows per item), an expert list with an inactive
// tail, the shared expert's slot, and 2- and 3-token batches (experts with more than one position
// still come out right).
// Tolerances: the GEMVs sum exact bf16 x e4m3 products in fp32 (kFp8GemvTolerance, as the dense
// decode GEMV); the silu output is rounded to bf16 on both sides (kBf16Tolerance).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_grouped_gemm.hpp"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_f16_gemv.hpp"
#include "kernels/moe_rows_gemv.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

constexpr double kGroupedGemvTolerance = 1e-9;

// Per token, k distinct experts of [0, experts); `hot` >= 0: every slot on that expert.
void random_ids(int32_t* ids, int64_t m, int32_t k, int32_t experts, std::mt19937& rng, int32_t hot) {
  std::vector<int32_t> perm(static_cast<size_t>(experts));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t t = 0; t < m; ++t) {
    for (int32_t i = 0; i < k; ++i) {
      std::uniform_int_distribution<int32_t> pick(i, experts - 1);
      std::swap(perm[size_t(i)], perm[size_t(pick(rng))]);
      ids[t * k + i] = hot >= 0 ? hot : perm[size_t(i)];
    }
  }
}

// A router's output for m tokens: ids (random_ids) and N(0, 1) weights, on the host and the device.
struct RoutedInput {
  int32_t* ids;
  float* weights;
  const int32_t* d_ids;
  const float* d_weights;
};
RoutedInput routed_input(OpRun& r, int64_t m, int32_t k, int32_t experts, int32_t hot, std::mt19937& rng) {
  const size_t slots = size_t(m * k);
  RoutedInput in{r.host<int32_t>(slots), nullptr, nullptr, nullptr};
  random_ids(in.ids, m, k, experts, rng, hot);
  in.weights = r.host<float>(slots);
  fill_normal(in.weights, slots, rng);
  in.d_ids = r.device(in.ids, slots);
  in.d_weights = r.device(in.weights, slots);
  return in;
}

// The grouping of a batch as the backend builds it (moe_align pad 1, then the active list), on the host.
struct Plan {
  int64_t slots = 0, max_active = 0;
  int32_t* ids = nullptr;  // host [slots]
  int32_t* sorted = nullptr;
  int32_t* pos = nullptr;
  int32_t num_active = 0;
  int32_t* active_expert = nullptr;  // host [max_active]
  int32_t* active_begin = nullptr;   // host [max_active + 1]
};

// with_shared: as the backend groups with a shared expert: local ids first (another rank's experts
// -1, the shared expert table entry `local` on one more slot of each token), moe_align over the
// local + 1 entries, the active list over all of them.
Plan make_plan(OpRun& r, int64_t m, int32_t k, int32_t experts, int32_t begin, int32_t local, int32_t hot,
               bool with_shared, std::mt19937& rng) {
  Plan p;
  p.slots = m * k;
  p.ids = r.host<int32_t>(size_t(p.slots));
  random_ids(p.ids, m, k, experts, rng, hot);
  int32_t table = experts;
  if (with_shared) {
    const int64_t routed = p.slots;
    const int32_t* global = p.ids;
    p.slots = m * (k + 1);
    p.ids = r.host<int32_t>(size_t(p.slots));
    std::vector<float> weights(static_cast<size_t>(routed), 1.0f), weights_out(static_cast<size_t>(p.slots));
    moe_local_ids_ref(global, weights.data(), m, k, begin, local, true, p.ids, weights_out.data());
    table = local + 1;
    begin = 0;
    local = table;
  }
  p.max_active = moe_max_active(local, p.slots);
  int32_t* counts = r.host<int32_t>(size_t(table));
  int32_t* offsets = r.host<int32_t>(size_t(table + 1));
  p.sorted = r.host<int32_t>(size_t(p.slots));
  p.pos = r.host<int32_t>(size_t(p.slots));
  moe_align_ref(p.ids, p.slots, table, 1, counts, offsets, p.sorted, p.slots, p.pos);
  p.active_expert = r.host<int32_t>(size_t(p.max_active), -1);
  p.active_begin = r.host<int32_t>(size_t(p.max_active + 1), -1);
  moe_active_experts_ref(p.ids, p.slots, counts, offsets, begin, local, &p.num_active, p.active_expert,
                         p.active_begin, p.pos);
  return p;
}

OpCase active_experts_case(int64_t m, int32_t experts, int32_t k, int32_t begin, int32_t local, int32_t hot = -1) {
  std::string dims = sizes({{"m", m}, {"E", experts}, {"k", k}, {"begin", begin}, {"local", local}});
  if (hot >= 0) dims += " hot=" + std::to_string(hot);
  return {"moe_active_experts", "i32", dims, [=](std::mt19937& rng) {
            OpRun r;
            const int64_t slots = m * k, max_active = moe_max_active(local, slots);
            int32_t* ids = r.host<int32_t>(size_t(slots));
            random_ids(ids, m, k, experts, rng, hot);
            int32_t* counts = r.host<int32_t>(size_t(experts));
            int32_t* offsets = r.host<int32_t>(size_t(experts + 1));
            int32_t* sorted = r.host<int32_t>(size_t(slots));
            int32_t* pos = r.host<int32_t>(size_t(slots));
            moe_align_ref(ids, slots, experts, 1, counts, offsets, sorted, slots, pos);
            const int32_t* d_ids = r.device(ids, size_t(slots));
            const int32_t* d_counts = r.device(counts, size_t(experts));
            const int32_t* d_offsets = r.device(offsets, size_t(experts + 1));
            int32_t* d_pos = r.device(pos, size_t(slots));
            int32_t* num_active = r.poisoned<int32_t>(1);
            int32_t* active = r.poisoned<int32_t>(size_t(max_active));
            int32_t* active_begin = r.poisoned<int32_t>(size_t(max_active + 1));
            int32_t* ref_num = r.host<int32_t>(1);
            int32_t* ref_active = r.host<int32_t>(size_t(max_active), -1);
            int32_t* ref_begin = r.host<int32_t>(size_t(max_active + 1), -1);
            int32_t* ref_pos = r.host<int32_t>(size_t(slots));
            std::copy(pos, pos + slots, ref_pos);
            r.launch = [=](cudaStream_t s) {
              return launch_moe_active_experts(d_ids, slots, experts, d_counts, d_offsets, begin, local, num_active,
                                               active, active_begin, d_pos, s);
            };
            r.reference = [=] {
              moe_active_experts_ref(ids, slots, counts, offsets, begin, local, ref_num, ref_active, ref_begin,
                                     ref_pos);
            };
            r.expect("num_active", Elem::i32, num_active, ref_num, Elem::i32, 1, kExact);
            r.expect("active_expert", Elem::i32, active, ref_active, Elem::i32, size_t(max_active), kExact);
            r.expect("active_begin", Elem::i32, active_begin, ref_begin, Elem::i32, size_t(max_active + 1), kExact);
            r.expect("slot_pos", Elem::i32, d_pos, ref_pos, Elem::i32, size_t(slots), kExact);
            r.bytes = double(slots * 12 + int64_t(experts) * 8);
            return r;
          }};
}

OpCase local_ids_case(int64_t m, int32_t experts, int32_t k, int32_t begin, int32_t local, bool with_shared) {
  return {"moe_local_ids", "i32", sizes({{"m", m}, {"E", experts}, {"k", k}, {"begin", begin}, {"local", local}}) +
                                      (with_shared ? " shared" : ""),
          [=](std::mt19937& rng) {
            OpRun r;
            const int64_t slots = m * k, out_slots = m * (k + (with_shared ? 1 : 0));
            const RoutedInput in = routed_input(r, m, k, experts, -1, rng);
            int32_t* out_ids = r.poisoned<int32_t>(size_t(out_slots));
            float* out_weights = r.poisoned<float>(size_t(out_slots));
            int32_t* ref_ids = r.host<int32_t>(size_t(out_slots));
            float* ref_weights = r.host<float>(size_t(out_slots));
            r.launch = [=](cudaStream_t s) {
              return launch_moe_local_ids(in.d_ids, in.d_weights, m, k, begin, local, with_shared, out_ids, out_weights,
                                          s);
            };
            r.reference = [=] {
              moe_local_ids_ref(in.ids, in.weights, m, k, begin, local, with_shared, ref_ids, ref_weights);
            };
            r.expect("ids", Elem::i32, out_ids, ref_ids, Elem::i32, size_t(out_slots), kExact);
            r.expect("weights", Elem::f32, out_weights, ref_weights, Elem::f32, size_t(out_slots), kExact);
            r.bytes = double(slots * 8 + out_slots * 8);
            return r;
          }};
}

// launch_moe_slots_one_block against moe_local_ids_ref, moe_align_ref (pad 1) and
// moe_active_experts_ref in turn, as the backend ran the three launches: every output bit for bit.
OpCase slots_one_block_case(int64_t m, int32_t experts, int32_t k, int32_t begin, int32_t local, bool with_shared,
                            int32_t hot = -1) {
  std::string dims = sizes({{"m", m}, {"E", experts}, {"k", k}, {"begin", begin}, {"local", local}}) +
                     (with_shared ? " shared" : "");
  if (hot >= 0) dims += " hot=" + std::to_string(hot);
  return {"moe_slots_one_block", "i32", dims, [=](std::mt19937& rng) {
            OpRun r;
            const int32_t table = local + (with_shared ? 1 : 0);
            const int64_t in_slots = m * k, slots = m * (k + (with_shared ? 1 : 0));
            const int64_t max_active = moe_max_active(table, slots);
            const RoutedInput in = routed_input(r, m, k, experts, hot, rng);
            int32_t* out_ids = r.poisoned<int32_t>(size_t(slots));
            float* out_weights = r.poisoned<float>(size_t(slots));
            int32_t* counts = r.poisoned<int32_t>(size_t(table));
            int32_t* offsets = r.poisoned<int32_t>(size_t(table + 1));
            int32_t* sorted = r.poisoned<int32_t>(size_t(slots));
            int32_t* pos = r.poisoned<int32_t>(size_t(slots));
            int32_t* num_active = r.poisoned<int32_t>(1);
            int32_t* active = r.poisoned<int32_t>(size_t(max_active));
            int32_t* active_begin = r.poisoned<int32_t>(size_t(max_active + 1));
            int32_t* ref_ids = r.host<int32_t>(size_t(slots));
            float* ref_weights = r.host<float>(size_t(slots));
            int32_t* ref_counts = r.host<int32_t>(size_t(table));
            int32_t* ref_offsets = r.host<int32_t>(size_t(table + 1));
            int32_t* ref_sorted = r.host<int32_t>(size_t(slots));
            int32_t* ref_pos = r.host<int32_t>(size_t(slots), -1);
            int32_t* ref_num = r.host<int32_t>(1);
            int32_t* ref_active = r.host<int32_t>(size_t(max_active), -1);
            int32_t* ref_begin = r.host<int32_t>(size_t(max_active + 1), -1);
            r.launch = [=](cudaStream_t s) {
              return launch_moe_slots_one_block(in.d_ids, in.d_weights, m, k, begin, local, with_shared, out_ids,
                                                out_weights, counts, offsets, sorted, pos, num_active, active,
                                                active_begin, s);
            };
            r.reference = [=] {
              moe_local_ids_ref(in.ids, in.weights, m, k, begin, local, with_shared, ref_ids, ref_weights);
              moe_align_ref(ref_ids, slots, table, 1, ref_counts, ref_offsets, ref_sorted, slots, ref_pos);
              moe_active_experts_ref(ref_ids, slots, ref_counts, ref_offsets, 0, table, ref_num, ref_active,
                                     ref_begin, ref_pos);
            };
            r.expect("ids", Elem::i32, out_ids, ref_ids, Elem::i32, size_t(slots), kExact);
            r.expect("weights", Elem::f32, out_weights, ref_weights, Elem::f32, size_t(slots), kExact);
            r.expect("counts", Elem::i32, counts, ref_counts, Elem::i32, size_t(table), kExact);
            r.expect("offsets", Elem::i32, offsets, ref_offsets, Elem::i32, size_t(table + 1), kExact);
            r.expect("sorted", Elem::i32, sorted, ref_sorted, Elem::i32, size_t(slots), kExact);
            r.expect("slot_pos", Elem::i32, pos, ref_pos, Elem::i32, size_t(slots), kExact);
            r.expect("num_active", Elem::i32, num_active, ref_num, Elem::i32, 1, kExact);
            r.expect("active_expert", Elem::i32, active, ref_active, Elem::i32, size_t(max_active), kExact);
            r.expect("active_begin", Elem::i32, active_begin, ref_begin, Elem::i32, size_t(max_active + 1), kExact);
            r.bytes = double(in_slots * 8 + slots * 20 + int64_t(table) * 8);
            return r;
          }};
}

template <class T>
OpCase gather_scaled_case(int64_t m, int64_t hidden, int32_t slot_div) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  return {"moe_gather_scaled", kF32 ? "f32->bf16" : "bf16",
          sizes({{"m", m}, {"hidden", hidden}, {"k", 8}, {"slot_div", slot_div}}), [=](std::mt19937& rng) {
            OpRun r;
            const int32_t k = 8, experts = 256;
            const int64_t slots = m * k, stride = moe_perm_stride(hidden), rows = slots / slot_div;
            int32_t* ids = r.host<int32_t>(size_t(slots));
            random_ids(ids, m, k, experts, rng, -1);
            std::vector<int32_t> counts(static_cast<size_t>(experts)), offsets(static_cast<size_t>(experts + 1));
            std::vector<int32_t> pos(static_cast<size_t>(slots));
            int32_t* sorted = r.host<int32_t>(size_t(slots));
            moe_align_ref(ids, slots, experts, 1, counts.data(), offsets.data(), sorted, slots, pos.data());
            if (slot_div == 1)  // per-slot rows: drop a few slots (they read as -1: zero rows)
              for (int64_t p = 5; p < slots; p += 11) sorted[p] = -1;
            const size_t count = size_t(rows * hidden), out_count = size_t(slots * stride);
            float* x = r.host<float>(count);
            fill_normal(x, count, rng);
            for (size_t i = 0; i < count; ++i) x[i] = host_bf16_to_f32(host_f32_to_bf16(x[i]));  // exact in bf16
            const void* dx = nullptr;
            if constexpr (kF32) {
              dx = r.device(x, count);
            } else {
              uint16_t* xb = r.host<uint16_t>(count);
              for (size_t i = 0; i < count; ++i) xb[i] = host_f32_to_bf16(x[i]);
              dx = r.device(xb, count);
            }
            const int32_t* d_sorted = r.device(sorted, size_t(slots));
            uint16_t* out = r.poisoned<uint16_t>(out_count);
            uint16_t* ref = r.host<uint16_t>(out_count);
            r.launch = [=](cudaStream_t s) {
              return launch_moe_gather_scaled(static_cast<const T*>(dx), d_sorted, slot_div, out, slots, hidden,
                                              stride, s);
            };
            r.reference = [=] {
              std::vector<float> real(out_count);
              moe_gather_scaled_ref(x, sorted, slot_div, real.data(), slots, hidden, stride);
              for (size_t i = 0; i < out_count; ++i) ref[i] = host_f32_to_bf16(real[i] * kMoeXShift);
            };
            r.expect("x_perm", Elem::bf16, out, ref, Elem::bf16, out_count, kExact);
            r.bytes = double(slots * hidden * int64_t(sizeof(T)) + int64_t(out_count) * 2);
            return r;
          }};
}

// The experts' weights: per local expert an e4m3 [rows, k] matrix and its block scales, each in
// its own device allocation; the pointer tables on the device.
struct Experts {
  std::vector<const uint8_t*> w;      // host copies
  std::vector<const float*> scale;
  const uint8_t* const* d_w = nullptr;  // device tables
  const float* const* d_scale = nullptr;
};

Experts make_experts(OpRun& r, int32_t local, int64_t rows, int64_t k, std::mt19937& rng) {
  Experts ex;
  std::vector<const uint8_t*> dw;
  std::vector<const float*> ds;
  std::normal_distribution<float> normal(0.0f, 0.6f);
  std::uniform_real_distribution<float> unit(0.5f, 2.0f);
  const int64_t num_scales = fp8_num_blocks(rows) * fp8_num_blocks(k);
  for (int32_t e = 0; e < local; ++e) {
    uint8_t* w = r.host<uint8_t>(size_t(rows * k));
    for (int64_t i = 0; i < rows * k; ++i) w[i] = host_f32_to_e4m3(normal(rng) * 64.0f);
    float* s = r.host<float>(size_t(num_scales));
    for (int64_t i = 0; i < num_scales; ++i) s[i] = unit(rng) / 1024.0f;
    ex.w.push_back(w);
    ex.scale.push_back(s);
    dw.push_back(r.device(w, size_t(rows * k)));
    ds.push_back(r.device(s, size_t(num_scales)));
  }
  ex.d_w = r.device(dw.data(), dw.size());
  ex.d_scale = r.device(ds.data(), ds.size());
  return ex;
}

// The positions' activations: bf16 values (real in `x`, [slots, stride], zero past k) and the device's
// bf16 * 2^64 bits.
const uint16_t* make_x_perm(OpRun& r, int64_t slots, int64_t k, int64_t stride, std::mt19937& rng, float** x) {
  const size_t count = size_t(slots * stride);
  float* real = r.host<float>(count, 0.0f);
  uint16_t* bits = r.host<uint16_t>(count, 0);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t p = 0; p < slots; ++p) {
    for (int64_t c = 0; c < k; ++c) {
      const float v = host_bf16_to_f32(host_f32_to_bf16(normal(rng)));
      real[p * stride + c] = v;
      bits[p * stride + c] = host_f32_to_bf16(v * kMoeXShift);
    }
  }
  *x = real;
  return r.device(bits, count);
}

struct GroupedShape {
  int64_t m;
  int32_t experts, k, begin, local;
  int64_t hidden, inter;
  int32_t hot = -1;
  bool with_shared = false;  // the shared expert as table entry `local`, on every token
};

std::string grouped_sizes(const GroupedShape& c) {
  std::string s = sizes({{"m", c.m}, {"E", c.experts}, {"k", c.k}, {"begin", c.begin}, {"local", c.local},
                         {"hidden", c.hidden}, {"inter", c.inter}});
  if (c.hot >= 0) s += " hot=" + std::to_string(c.hot);
  if (c.with_shared) s += " shared";
  return s;
}

// Which launchers a row runs: the grouped kernels or the one-token rows kernels.
enum class Path { grouped, rows, f16 };

OpCase gate_up_silu_case(const GroupedShape& c, Path path = Path::grouped) {
  const char* op = path == Path::rows  ? "moe_rows_gate_up_silu"
                   : path == Path::f16 ? "moe_f16_gate_up_silu"
                                       : "moe_grouped_gate_up_silu";
  return {op, "e4m3 x bf16->bf16", grouped_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const Plan p = make_plan(r, c.m, c.k, c.experts, c.begin, c.local, c.hot, c.with_shared, rng);
            const Experts ex = make_experts(r, c.local + (c.with_shared ? 1 : 0), 2 * c.inter, c.hidden, rng);
            const int64_t x_stride = moe_perm_stride(c.hidden), act_stride = moe_perm_stride(c.inter);
            float* x = nullptr;
            const uint16_t* d_x = make_x_perm(r, p.slots, c.hidden, x_stride, rng, &x);
            const int32_t* d_num = r.device(&p.num_active, 1);
            const int32_t* d_active = r.device(p.active_expert, size_t(p.max_active));
            const int32_t* d_begin = r.device(p.active_begin, size_t(p.max_active + 1));
            const size_t out_count = size_t(p.slots * act_stride);
            uint16_t* act = r.poisoned<uint16_t>(out_count);
            uint16_t* ref = r.host<uint16_t>(out_count, poison_value<uint16_t>());
            const int64_t max_active = p.max_active, m = c.m, slots = p.slots;
            r.launch = [=](cudaStream_t s) {
              if (path == Path::f16)
                return launch_moe_f16_gate_up_silu(d_x, x_stride, ex.d_w, ex.d_scale, d_num, d_active, d_begin,
                                                   max_active, slots, m, act, act_stride, c.inter, c.hidden, s);
              if (path == Path::rows)
                return launch_moe_rows_gate_up_silu(d_x, x_stride, ex.d_w, ex.d_scale, d_num, d_active, d_begin,
                                                    max_active, act, act_stride, c.inter, c.hidden, s);
              return launch_moe_grouped_gate_up_silu(d_x, x_stride, ex.d_w, ex.d_scale, d_num, d_active, d_begin,
                                                     max_active, act, act_stride, c.inter, c.hidden, m, s);
            };
            r.reference = [=] {
              for (int32_t j = 0; j < p.num_active; ++j) {
                const int32_t e = p.active_expert[j], b = p.active_begin[j], cnt = p.active_begin[j + 1] - b;
                std::vector<double> a(size_t(cnt * c.inter));
                moe_expert_silu_ref(x + int64_t(b) * x_stride, x_stride, ex.w[size_t(e)], ex.scale[size_t(e)],
                                    a.data(), cnt, c.inter, c.hidden);
                for (int32_t q = 0; q < cnt; ++q)
                  for (int64_t col = 0; col < act_stride; ++col)
                    ref[size_t((b + q) * act_stride + col)] =
                        col < c.inter ? host_f32_to_bf16(float(a[size_t(q * c.inter + col)]) * kMoeXShift) : 0;
              }
            };
            r.expect("act_perm", Elem::bf16, act, ref, Elem::bf16, out_count, kBf16Tolerance);
            r.bytes = double(p.num_active) * double(2 * c.inter * c.hidden);
            return r;
          }};
}

OpCase grouped_gemv_case(const GroupedShape& c, Path path = Path::grouped) {
  const char* op = path == Path::rows ? "moe_rows_gemv" : path == Path::f16 ? "moe_f16_gemv" : "moe_grouped_gemv";
  return {op, "e4m3 x bf16->f32", grouped_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const Plan p = make_plan(r, c.m, c.k, c.experts, c.begin, c.local, c.hot, c.with_shared, rng);
            // The down projection: W [hidden, inter], x the activation [*, inter].
            const Experts ex = make_experts(r, c.local + (c.with_shared ? 1 : 0), c.hidden, c.inter, rng);
            const int64_t x_stride = moe_perm_stride(c.inter);
            float* x = nullptr;
            const uint16_t* d_x = make_x_perm(r, p.slots, c.inter, x_stride, rng, &x);
            const int32_t* d_num = r.device(&p.num_active, 1);
            const int32_t* d_active = r.device(p.active_expert, size_t(p.max_active));
            const int32_t* d_begin = r.device(p.active_begin, size_t(p.max_active + 1));
            const size_t out_count = size_t(p.slots * c.hidden);
            float* y = r.poisoned<float>(out_count);
            double* ref = r.host<double>(out_count, std::nan(""));
            const int64_t max_active = p.max_active, m = c.m, slots = p.slots;
            r.launch = [=](cudaStream_t s) {
              if (path == Path::f16)
                return launch_moe_f16_gemv(d_x, x_stride, ex.d_w, ex.d_scale, d_num, d_active, d_begin, max_active,
                                           slots, m, y, c.hidden, c.inter, s);
              if (path == Path::rows)
                return launch_moe_rows_gemv(d_x, x_stride, ex.d_w, ex.d_scale, d_num, d_active, d_begin, max_active, y,
                                            c.hidden, c.inter, s);
              return launch_moe_grouped_gemv(d_x, x_stride, ex.d_w, ex.d_scale, d_num, d_active, d_begin, max_active,
                                             y, c.hidden, c.inter, m, s);
            };
            r.reference = [=] {
              for (int32_t j = 0; j < p.num_active; ++j) {
                const int32_t e = p.active_expert[j], b = p.active_begin[j], cnt = p.active_begin[j + 1] - b;
                moe_expert_rows_ref(x + int64_t(b) * x_stride, x_stride, ex.w[size_t(e)], ex.scale[size_t(e)],
                                    ref + int64_t(b) * c.hidden, cnt, c.hidden, c.inter);
              }
            };
            r.expect("y_perm", Elem::f32, y, ref, Elem::f64, out_count, kGroupedGemvTolerance);
            r.bytes = double(p.num_active) * double(c.hidden * c.inter);
            return r;
          }};
}


// The grouped prefill GEMM (kernels/moe_grouped_gemm): experts with the given row counts (0: an
// expert with no row, none past one 128-row tile, several tiles, a last partial one), x already
// e4m3 with moe_segment_quant's segmented scales, against moe_grouped_gemm_ref (fp64). The device
// sums each 128-wide K block on FP8 tensor cores and rounds the output to bf16: kBf16Tolerance,
// per row too (a wrong tile, row or scale moves a whole row).
OpCase grouped_gemm_case(std::vector<int32_t> rows, int64_t n, int64_t k, int64_t tile_rows, bool f32_out = false,
                         bool overlap = false) {
  std::string dims = sizes({{"n", n}, {"k", k}, {"tile", tile_rows}}) + (overlap ? " overlap" : "") + " rows=";
  for (size_t i = 0; i < rows.size(); ++i) dims += (i ? "," : "") + std::to_string(rows[i]);
  return {"moe_grouped_gemm", f32_out ? "e4m3->f32" : "e4m3->bf16", dims, [=](std::mt19937& rng) {
            OpRun r;
            const int32_t experts = int32_t(rows.size());
            int32_t* offsets = r.host<int32_t>(size_t(experts + 1));
            offsets[0] = 0;
            for (int32_t e = 0; e < experts; ++e) offsets[e + 1] = offsets[e] + rows[size_t(e)];
            const int64_t total = offsets[experts], num_kb = fp8_num_blocks(k), n_blocks = fp8_num_blocks(n);
            uint8_t* xq = r.host<uint8_t>(size_t(total * k));
            float* x = r.host<float>(size_t(total * k));
            float* x_scale = r.host<float>(size_t(num_kb * total));
            std::uniform_real_distribution<float> value(-448.0f, 448.0f), scale(0.5f / 448, 2.0f / 448);
            for (int64_t i = 0; i < total * k; ++i) {
              xq[i] = host_f32_to_e4m3(value(rng));
              x[i] = host_e4m3_to_f32(xq[i]);
            }
            for (int64_t i = 0; i < num_kb * total; ++i) x_scale[i] = scale(rng);
            const size_t num = static_cast<size_t>(experts);
            std::vector<const uint8_t*> w_host(num), w_dev(num);
            std::vector<const float*> ws_host(num), ws_dev(num);
            for (int32_t e = 0; e < experts; ++e) {
              uint8_t* w = r.host<uint8_t>(size_t(n * k));
              float* ws = r.host<float>(size_t(n_blocks * num_kb));
              for (int64_t i = 0; i < n * k; ++i) w[i] = host_f32_to_e4m3(value(rng));
              for (int64_t i = 0; i < n_blocks * num_kb; ++i) ws[i] = scale(rng);
              w_host[size_t(e)] = w;
              ws_host[size_t(e)] = ws;
              w_dev[size_t(e)] = r.device(w, size_t(n * k));
              ws_dev[size_t(e)] = r.device(ws, size_t(n_blocks * num_kb));
            }
            const std::vector<MoeGemmTile> tiles = moe_gemm_tiles(offsets, experts, tile_rows);
            MoeGemmTile* tiles_host = r.host<MoeGemmTile>(std::max<size_t>(tiles.size(), 1));
            std::copy(tiles.begin(), tiles.end(), tiles_host);
            const MoeGemmTile* d_tiles = r.device(tiles_host, std::max<size_t>(tiles.size(), 1));
            const uint8_t* const* d_w = r.device(w_dev.data(), w_dev.size());
            const float* const* d_ws = r.device(ws_dev.data(), ws_dev.size());
            const uint8_t* d_x = r.device(xq, size_t(total * k));
            const float* d_scale = r.device(x_scale, size_t(num_kb * total));
            uint16_t* out = f32_out ? nullptr : r.poisoned<uint16_t>(size_t(total * n));
            float* out32 = f32_out ? r.poisoned<float>(size_t(total * n)) : nullptr;
            double* ref = r.host<double>(size_t(total * n));
            const int32_t num_tiles = int32_t(tiles.size());
            const uint8_t** w_keep = r.host<const uint8_t*>(num);
            std::copy(w_host.begin(), w_host.end(), w_keep);
            const float** ws_keep = r.host<const float*>(num);
            std::copy(ws_host.begin(), ws_host.end(), ws_keep);
            r.launch = [=](cudaStream_t st) {
              if (f32_out)
                return launch_moe_grouped_gemm(d_x, d_scale, d_w, d_ws, d_tiles, num_tiles, tile_rows, out32, n, k, st,
                                               overlap);
              return launch_moe_grouped_gemm(d_x, d_scale, d_w, d_ws, d_tiles, num_tiles, tile_rows, out, n, k, st,
                                             overlap);
            };
            r.reference = [=] { moe_grouped_gemm_ref(x, x_scale, w_keep, ws_keep, offsets, experts, ref, n, k); };
            // fp32 out: only the tensor cores' sums within a block differ from fp64 (1e-6 as the
            // own FP8 GEMM's fp32 rows).
            if (f32_out)
              r.expect_rows("out", Elem::f32, out32, ref, Elem::f64, size_t(total * n), 1e-6, size_t(n), 1e-6);
            else
              r.expect_rows("out", Elem::bf16, out, ref, Elem::f64, size_t(total * n), kBf16Tolerance, size_t(n),
                            kBf16Tolerance);
            r.bytes = double(total * k + experts * n * k + total * n * 2);
            return r;
          }};
}
}  // namespace

void add_moe_expert_cases(std::vector<OpCase>& t) {
  for (int64_t tile : {64, 128, 192}) {
    t.push_back(grouped_gemm_case({0, 1, 130, 257, 64}, 256, 512, tile));  // empty, one row, partial and several tiles
    t.push_back(grouped_gemm_case({3, 129}, 512, 7168, tile));             // R1's expert K (56 blocks)
    t.push_back(grouped_gemm_case({40, 0, 200}, 4096, 256, tile));         // R1's gate_up N (32 tiles)
    t.push_back(grouped_gemm_case({77}, 7168, 2048, tile));                // R1's down N and K
    t.push_back(grouped_gemm_case({300}, 576, 7168, tile, true));          // a dense linear: R1's kv_a, fp32 out
    t.push_back(grouped_gemm_case({5, 70}, 144, 256, tile, true));         // n = 128 + 16
  }
  // The overlapped promotion (even block counts 2, 56; odd ones 1, 3 take the plain loop) with 64-
  // and 128-row tiles, and without.
  for (int64_t tile : {64, 128})
    for (int64_t k : {128, 256, 384, 7168}) t.push_back(grouped_gemm_case({0, 1, 130, 64}, 256, k, tile, false, true));
  for (int64_t k : {128, 384}) t.push_back(grouped_gemm_case({0, 1, 130, 64}, 256, k, 64));
  // 192-row tiles ask for the overlap and run without it; R1's prefill sizes (an expert of 140 rows
  // one tile; 400 rows: 192 + 192 + 16) at both products' shapes.
  t.push_back(grouped_gemm_case({0, 1, 130, 64}, 256, 256, 192, false, true));
  t.push_back(grouped_gemm_case({140, 400, 0, 191}, 4096, 7168, 192, false, true));
  t.push_back(grouped_gemm_case({140, 193}, 7168, 2048, 192, false, true));
  for (int64_t m : {1, 8, 64, 256}) {
    t.push_back(local_ids_case(m, 256, 8, 0, 256, true));
    t.push_back(local_ids_case(m, 256, 8, 64, 64, m % 2 == 0));
    t.push_back(active_experts_case(m, 256, 8, 0, 256));
    t.push_back(active_experts_case(m, 256, 8, 64, 64));  // expert parallel: rank 1 of 4
  }
  t.push_back(active_experts_case(3, 8, 2, 0, 8));     // the DeepSeek fixture
  t.push_back(active_experts_case(64, 256, 8, 0, 256, 5));  // every slot on expert 5
  t.push_back(active_experts_case(257, 512, 8, 0, 512));
  // The one-CTA bookkeeping of small batches: R1 with its shared expert (1 and 28 tokens: 9 and 252
  // slots), a rank of four (others' experts -1), every slot on one expert, no shared expert,
  // the DeepSeek fixture's 8 experts, and 511 local experts + the shared one (the table's limit).
  for (int64_t m : {1, 3, 28}) t.push_back(slots_one_block_case(m, 256, 8, 0, 256, true));
  t.push_back(slots_one_block_case(7, 256, 8, 64, 64, true));
  t.push_back(slots_one_block_case(5, 256, 8, 0, 256, true, 5));
  t.push_back(slots_one_block_case(6, 256, 8, 0, 256, false));
  t.push_back(slots_one_block_case(3, 8, 2, 0, 8, true));
  t.push_back(slots_one_block_case(2, 511, 8, 0, 511, true));

  for (int64_t m : {1, 8, 257}) {
    for (int64_t hidden : {111, 7168}) {
      t.push_back(gather_scaled_case<float>(m, hidden, 8));
      t.push_back(gather_scaled_case<uint16_t>(m, hidden, 8));
    }
    t.push_back(gather_scaled_case<uint16_t>(m, 1001, 1));
  }

  const GroupedShape shapes[] = {
      {1, 8, 2, 0, 8, 256, 160},       // fixture-like E; partial 128-block of inter
      {8, 8, 2, 0, 8, 200, 72},        // k % 16 != 0 (byte loads), partial blocks everywhere
      {1, 256, 8, 0, 256, 384, 256},   // R1's router: 248 experts with no token
      {8, 64, 8, 0, 64, 264, 136},
      {64, 64, 8, 0, 64, 256, 128},    // 8 tokens an expert on average
      {64, 64, 8, 16, 16, 256, 128},   // expert parallel: local experts 16..31
      {256, 32, 8, 0, 32, 136, 96},    // 64 tokens an expert: two passes of 32
      {64, 16, 8, 0, 16, 128, 64, 3},  // every slot on expert 3: 512 positions, 16 passes
      {1, 8, 8, 0, 8, 7168, 2048},     // R1's expert shapes: 56 and 16 K blocks over the K split of 4
      {8, 16, 4, 0, 16, 256, 160, -1, true},  // the shared expert's table entry on every token
  };
  for (const GroupedShape& c : shapes) {
    t.push_back(gate_up_silu_case(c));
    t.push_back(grouped_gemv_case(c));
  }

  // The one-token launches (K a multiple of 16). Their variants (moe_rows_gemv.cu): K < 4,096 bytes
  // warps own items, else they share them; items of 8/4/2/1 down rows or 4/2/1 gate_up columns by
  // the K chunks a warp gets. Each variant is named once below.
  const GroupedShape rows_shapes[] = {
      {1, 8, 8, 0, 8, 7168, 2048, -1, true},    // R1, 9 experts: gate_up shared 2 columns, down owned 2 rows
      {1, 8, 2, 0, 8, 400, 160, -1, true},      // one partial chunk and K block; up rows 160.. on scale rows 1, 2
      {1, 64, 8, 16, 16, 1040, 144, -1, true},  // expert parallel: an inactive tail; a 16-byte last chunk
      {1, 32, 8, 0, 32, 528, 528},              // no shared expert; K = a chunk + 16 bytes; down owned 4 rows
      {1, 8, 4, 0, 8, 256, 130, -1, true},      // inter % 4 == 2: owned gate_up of 2 columns (no down row)
      {1, 8, 4, 0, 8, 512, 99, -1, true},       // odd inter: owned gate_up of 1 column (no down row)
      {1, 4, 2, 0, 4, 6656, 48},                // 13 chunks on one warp: shared gate_up of 1 column
      {1, 4, 2, 0, 4, 48, 6656},                // shared down of 1 row, 8 chunks a step (n = 48)
      {1, 4, 2, 0, 4, 64, 7168},                // shared down of 4 rows (7 warps)
      {1, 4, 2, 0, 4, 64, 24576},               // the largest K (96 KB of x): shared down of 2 rows
      {1, 4, 2, 0, 4, 4096, 4096},              // shared gate_up of 4 columns, down of 8 rows (8 warps)
      {1, 4, 2, 0, 4, 3840, 3840},              // 8 chunks owned: gate_up of 1 column, down of 1 row
      {2, 8, 2, 0, 8, 4608, 160, -1, true},     // 2 tokens, shared gate_up: the shared expert twice
      {3, 16, 4, 0, 16, 272, 176, -1, true},    // 3 tokens, owned: weights read once a position
  };
  for (const GroupedShape& c : rows_shapes) {
    t.push_back(gate_up_silu_case(c, Path::rows));
    if (moe_rows_supported(c.inter)) t.push_back(grouped_gemv_case(c, Path::rows));
  }
  // The f16 tensor-core one-token launches (moe_f16_gemv.hpp) on the same shapes where they take
  // them (inter % 8 == 0): gate_up tiles of 8 columns whose up rows lie on other scale rows than
  // their gate rows (inter 144, 160, 176: not a multiple of 128), a single K block and partial ones
  // (K 48, 400, 528), several positions of one expert (m 2, 3), an inactive tail of experts. A
  // down's rows are the hidden size, a multiple of 16 on this path, so its tiles are whole.
  for (const GroupedShape& c : rows_shapes) {
    if (!moe_f16_supported(c.hidden, c.inter)) continue;
    t.push_back(gate_up_silu_case(c, Path::f16));
    t.push_back(grouped_gemv_case(c, Path::f16));
  }
  // The same launches on batches with more slots than experts (moe_f16_gemv.hpp: units of up to
  // `chunk` positions of one expert, block rows past the last unit idle): 8 a pass at small K, 3 at
  // R1's gate_up K of 7,168 (an expert's 8 positions as units of 3, 3 and 2; the shared expert
  // on every token), every slot on one expert (512 positions, 64 units), experts with no token,
  // expert parallel, partial K blocks with up rows on other scale rows.
  const GroupedShape f16_batch_shapes[] = {
      {64, 64, 8, 0, 64, 256, 128},
      {64, 64, 8, 16, 16, 256, 128},
      {64, 16, 8, 0, 16, 128, 64, 3},
      {8, 16, 4, 0, 16, 256, 160, -1, true},
      {8, 8, 2, 0, 8, 400, 160, -1, true},
      {8, 8, 8, 0, 8, 7168, 2048, -1, true},
  };
  for (const GroupedShape& c : f16_batch_shapes) {
    t.push_back(gate_up_silu_case(c, Path::f16));
    t.push_back(grouped_gemv_case(c, Path::f16));
  }
}

}  // namespace troupe::backend_ops

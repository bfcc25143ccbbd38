// Op table rows: norms (rmsnorm, add_rmsnorm), elementwise (silu_and_mul plain/packed, the bf16
// activation, add, add_bias, f32_to_bf16), embedding, gather_rows and argmax.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/argmax.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/gather_rows.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/mlp_activation.hpp"
#include "kernels/rmsnorm.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

constexpr float kEps = 1e-5f;
constexpr int64_t kTokens[] = {1, 19, 99, 989};

// fp32 or bf16 bits out.
template <class OutT>
constexpr Elem elem_of() {
  return std::is_same_v<OutT, float> ? Elem::f32 : Elem::bf16;
}
template <class OutT>
constexpr double tolerance_of() {
  return std::is_same_v<OutT, float> ? kF32Tolerance : kBf16Tolerance;
}
template <class OutT>
const char* variant_of() {
  return std::is_same_v<OutT, float> ? "f32" : "f32->bf16";
}

template <class OutT>
OpCase rmsnorm_case(int64_t n, int64_t hidden) {
  return {"rmsnorm", variant_of<OutT>(), sizes({{"n", n}, {"hidden", hidden}}), [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * hidden);
            float* x = r.host<float>(count);
            float* w = r.host<float>(size_t(hidden));
            fill_normal(x, count, rng);
            fill_normal(w, size_t(hidden), rng);
            const float* dx = r.device(x, count);
            const float* dw = r.device(w, size_t(hidden));
            OutT* out = r.poisoned<OutT>(count);
            OutT* ref = r.host<OutT>(count);
            r.launch = [=](cudaStream_t s) {
              if constexpr (std::is_same_v<OutT, float>) return launch_rmsnorm_f32(dx, dw, out, n, hidden, kEps, s);
              else return launch_rmsnorm_f32_to_bf16(dx, dw, out, n, hidden, kEps, s);
            };
            r.reference = [=] { rmsnorm_ref(x, w, ref, n, hidden, kEps); };
            r.expect("out", elem_of<OutT>(), out, ref, elem_of<OutT>(), count, tolerance_of<OutT>());
            r.bytes = double(count * 4 + size_t(hidden) * 4 + count * sizeof(OutT));
            return r;
          }};
}

// out_shift: out starts that many rows into its buffer (4100 floats: 8-byte aligned bf16 rows, so
// the general kernel instead of the wide one).
template <class OutT>
OpCase add_rmsnorm_case(int64_t n, int64_t hidden, int64_t out_shift = 0) {
  std::string dims = sizes({{"n", n}, {"hidden", hidden}});
  if (out_shift) dims += " out+" + std::to_string(out_shift) + "row";
  return {"add_rmsnorm", variant_of<OutT>(), dims, [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * hidden);
            float* residual = r.host<float>(count);
            float* x = r.host<float>(count);
            float* w = r.host<float>(size_t(hidden));
            fill_normal(residual, count, rng);
            fill_normal(x, count, rng);
            fill_normal(w, size_t(hidden), rng);
            float* d_residual = r.device(residual, count);
            const float* dx = r.device(x, count);
            const float* dw = r.device(w, size_t(hidden));
            OutT* out = r.poisoned<OutT>(count, size_t(out_shift * hidden));
            OutT* ref = r.host<OutT>(count);
            r.launch = [=](cudaStream_t s) {
              if constexpr (std::is_same_v<OutT, float>)
                return launch_add_rmsnorm_f32(d_residual, dx, dw, out, n, hidden, kEps, s);
              else return launch_add_rmsnorm_f32_to_bf16(d_residual, dx, dw, out, n, hidden, kEps, s);
            };
            r.reference = [=] { add_rmsnorm_ref(residual, x, w, ref, n, hidden, kEps); };
            r.expect("out", elem_of<OutT>(), out, ref, elem_of<OutT>(), count, tolerance_of<OutT>());
            // residual + x is one fp32 addition on both sides.
            r.expect("residual", Elem::f32, d_residual, residual, Elem::f32, count, kExact);
            r.bytes = double(count * 12 + size_t(hidden) * 4 + count * sizeof(OutT));
            return r;
          }};
}

OpCase silu_and_mul_case(int64_t n, int64_t hidden) {
  return {"silu_and_mul", "f32", sizes({{"n", n}, {"hidden", hidden}}), [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * hidden);
            float* gate = r.host<float>(count);
            float* up = r.host<float>(count);
            fill_normal(gate, count, rng);
            fill_normal(up, count, rng);
            const float* d_gate = r.device(gate, count);
            const float* d_up = r.device(up, count);
            float* out = r.poisoned<float>(count);
            float* ref = r.host<float>(count);
            r.launch = [=](cudaStream_t s) { return launch_silu_and_mul_f32(d_gate, d_up, out, int64_t(count), s); };
            r.reference = [=] { silu_and_mul_ref(gate, up, ref, int64_t(count)); };
            r.expect("out", Elem::f32, out, ref, Elem::f32, count, kF32Tolerance);
            r.bytes = double(count * 12);
            return r;
          }};
}

// inter % 4 == 0 takes the float4 kernel, other widths one output a thread.
template <class OutT>
OpCase silu_and_mul_packed_case(int64_t n, int64_t inter) {
  return {"silu_and_mul_packed", variant_of<OutT>(), sizes({{"n", n}, {"inter", inter}}), [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * inter);
            float* gate_up = r.host<float>(2 * count);
            fill_normal(gate_up, 2 * count, rng);
            const float* d_gate_up = r.device(gate_up, 2 * count);
            OutT* out = r.poisoned<OutT>(count);
            OutT* ref = r.host<OutT>(count);
            r.launch = [=](cudaStream_t s) {
              if constexpr (std::is_same_v<OutT, float>) return launch_silu_and_mul_packed_f32(d_gate_up, out, n, inter, s);
              else return launch_silu_and_mul_packed_f32_to_bf16(d_gate_up, out, n, inter, s);
            };
            r.reference = [=] { silu_and_mul_packed_ref(gate_up, ref, n, inter); };
            r.expect("out", elem_of<OutT>(), out, ref, elem_of<OutT>(), count, tolerance_of<OutT>());
            r.bytes = double(count * 8 + count * sizeof(OutT));
            return r;
          }};
}

// bf16 in and out (mlp_activation.hpp): inter % 8 == 0 takes the 16-byte kernel.
OpCase silu_and_mul_packed_bf16_case(int64_t n, int64_t inter) {
  return {"silu_and_mul_packed", "bf16", sizes({{"n", n}, {"inter", inter}}), [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * inter);
            uint16_t* gate_up = r.host<uint16_t>(2 * count);
            fill_bf16_normal(gate_up, 2 * count, rng);
            const uint16_t* d_gate_up = r.device(gate_up, 2 * count);
            uint16_t* out = r.poisoned<uint16_t>(count);
            uint16_t* ref = r.host<uint16_t>(count);
            r.launch = [=](cudaStream_t s) { return launch_silu_and_mul_packed_bf16(d_gate_up, out, n, inter, s); };
            r.reference = [=] { silu_and_mul_packed_bf16_ref(gate_up, ref, n, inter); };
            r.expect("out", Elem::bf16, out, ref, Elem::bf16, count, kBf16Tolerance);
            r.bytes = double(count * 6);
            return r;
          }};
}

OpCase add_case(int64_t n, int64_t hidden) {
  return {"add", "f32", sizes({{"n", n}, {"hidden", hidden}}), [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * hidden);
            float* a = r.host<float>(count);
            float* b = r.host<float>(count);
            fill_normal(a, count, rng);
            fill_normal(b, count, rng);
            const float* da = r.device(a, count);
            const float* db = r.device(b, count);
            float* out = r.poisoned<float>(count);
            float* ref = r.host<float>(count);
            r.launch = [=](cudaStream_t s) { return launch_add_f32(da, db, out, int64_t(count), s); };
            r.reference = [=] { add_ref(a, b, ref, int64_t(count)); };
            r.expect("out", Elem::f32, out, ref, Elem::f32, count, kExact);  // one fp32 add
            r.bytes = double(count * 12);
            return r;
          }};
}

OpCase add_bias_case(int64_t rows, int64_t cols) {
  return {"add_bias", "f32", sizes({{"rows", rows}, {"cols", cols}}), [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(rows * cols);
            float* out_ref = r.host<float>(count);
            float* bias = r.host<float>(size_t(cols));
            fill_normal(out_ref, count, rng);
            fill_normal(bias, size_t(cols), rng);
            float* out = r.device(out_ref, count);
            const float* d_bias = r.device(bias, size_t(cols));
            r.launch = [=](cudaStream_t s) { return launch_add_bias_f32(out, d_bias, rows, cols, s); };
            r.reference = [=] { add_bias_ref(out_ref, bias, rows, cols); };
            r.expect("out", Elem::f32, out, out_ref, Elem::f32, count, kExact);
            r.bytes = double(count * 8 + size_t(cols) * 4);
            return r;
          }};
}

OpCase f32_to_bf16_case(int64_t count) {
  return {"convert", "f32->bf16", sizes({{"count", count}}), [=](std::mt19937& rng) {
            OpRun r;
            float* x = r.host<float>(size_t(count));
            fill_awkward(x, size_t(count), rng);
            const float* dx = r.device(x, size_t(count));
            uint16_t* out = r.poisoned<uint16_t>(size_t(count));
            uint16_t* ref = r.host<uint16_t>(size_t(count));
            r.launch = [=](cudaStream_t s) { return launch_f32_to_bf16(dx, out, count, s); };
            r.reference = [=] { f32_to_bf16_ref(x, ref, count); };
            r.expect("out", Elem::bf16, out, ref, Elem::bf16, size_t(count), kExact);
            r.bytes = double(count * 6);
            return r;
          }};
}

// shift: x that many elements past an aligned address (1: not 16-byte aligned, the one-value kernel).
OpCase bf16_to_f32_case(int64_t count, size_t shift = 0) {
  return {"convert", "bf16->f32", sizes({{"count", count}, {"shift", int64_t(shift)}}), [=](std::mt19937& rng) {
            OpRun r;
            float* wide = r.host<float>(size_t(count));
            fill_awkward(wide, size_t(count), rng);
            uint16_t* x = r.host<uint16_t>(size_t(count));
            f32_to_bf16_ref(wide, x, count);
            const uint16_t* dx = r.device(x, size_t(count), shift);
            float* out = r.poisoned<float>(size_t(count));
            float* ref = r.host<float>(size_t(count));
            r.launch = [=](cudaStream_t s) { return launch_bf16_to_f32(dx, out, count, s); };
            r.reference = [=] { bf16_to_f32_ref(x, ref, count); };
            r.expect("out", Elem::f32, out, ref, Elem::f32, size_t(count), kExact);
            r.bytes = double(count * 6);
            return r;
          }};
}

// TableT: float or uint16_t (a bf16 table, widened exactly).
template <class TableT>
OpCase embedding_case(int64_t n, int64_t hidden) {
  constexpr int64_t vocab = 333;
  return {"embedding", std::is_same_v<TableT, float> ? "f32" : "bf16 table", sizes({{"n", n}, {"hidden", hidden}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const size_t count = size_t(n * hidden);
            int32_t* ids = r.host<int32_t>(size_t(n));
            for (int64_t t = 0; t < n; ++t) ids[t] = int32_t(rng() % vocab);
            TableT* table = r.host<TableT>(size_t(vocab * hidden));
            if constexpr (std::is_same_v<TableT, float>) fill_normal(table, size_t(vocab * hidden), rng);
            else fill_bf16_normal(table, size_t(vocab * hidden), rng);
            const int32_t* d_ids = r.device(ids, size_t(n));
            const TableT* d_table = r.device(table, size_t(vocab * hidden));
            float* out = r.poisoned<float>(count);
            float* ref = r.host<float>(count);
            r.launch = [=](cudaStream_t s) {
              if constexpr (std::is_same_v<TableT, float>) return launch_embedding_f32(d_ids, d_table, out, n, hidden, s);
              else return launch_embedding_bf16(d_ids, d_table, out, n, hidden, s);
            };
            r.reference = [=] { embedding_ref(ids, table, ref, n, hidden); };
            r.expect("out", Elem::f32, out, ref, Elem::f32, count, kExact);
            r.bytes = double(count * (sizeof(TableT) + 4) + size_t(n) * 4);
            return r;
          }};
}

// Rows n-1, n-4, ... and 0 of an [n, dim] input.
template <class T>
OpCase gather_rows_case(int64_t n, int64_t dim) {
  return {"gather_rows", std::is_same_v<T, float> ? "f32" : "bf16", sizes({{"n", n}, {"dim", dim}}),
          [=](std::mt19937& rng) {
            OpRun r;
            std::vector<int32_t> picked;
            for (int64_t i = n - 1; i >= 0; i -= 3) picked.push_back(int32_t(i));
            picked.push_back(0);
            const int64_t num_rows = int64_t(picked.size());
            int32_t* rows = r.host<int32_t>(picked.size());
            std::copy(picked.begin(), picked.end(), rows);
            T* x = r.host<T>(size_t(n * dim));
            if constexpr (std::is_same_v<T, float>) fill_normal(x, size_t(n * dim), rng);
            else fill_bf16_normal(x, size_t(n * dim), rng);
            const T* dx = r.device(x, size_t(n * dim));
            const int32_t* d_rows = r.device(rows, picked.size());
            T* out = r.poisoned<T>(size_t(num_rows * dim));
            T* ref = r.host<T>(size_t(num_rows * dim));
            r.launch = [=](cudaStream_t s) {
              if constexpr (std::is_same_v<T, float>) return launch_gather_rows_f32(dx, d_rows, out, num_rows, dim, s);
              else return launch_gather_rows_bf16(dx, d_rows, out, num_rows, dim, s);
            };
            r.reference = [=] { gather_rows_ref(x, rows, ref, num_rows, dim); };
            const Elem e = std::is_same_v<T, float> ? Elem::f32 : Elem::bf16;
            r.expect("out", e, out, ref, e, size_t(num_rows * dim), kExact);
            r.bytes = double(2 * size_t(num_rows * dim) * sizeof(T));
            return r;
          }};
}

// Every 3rd row with many ties (logits rounded to halves: the first index wins), every 4th with
// -inf entries, row 5 with a NaN (never wins), row 7 all -inf (INT32_MAX).
OpCase argmax_case(int64_t rows, int64_t vocab) {
  return {"argmax", "f32", sizes({{"rows", rows}, {"vocab", vocab}}), [=](std::mt19937& rng) {
            OpRun r;
            float* logits = r.host<float>(size_t(rows * vocab));
            fill_normal(logits, size_t(rows * vocab), rng, 2.0f);
            for (int64_t row = 0; row < rows; ++row) {
              float* x = logits + row * vocab;
              if (row % 3 == 1)
                for (int64_t i = 0; i < vocab; ++i) x[i] = std::round(x[i] * 2.0f) / 2.0f;
              if (row % 4 == 2)
                for (int64_t i = 0; i < vocab; i += 7) x[i] = -INFINITY;
              if (row == 5) x[vocab / 2] = NAN;
              if (row == 7)
                for (int64_t i = 0; i < vocab; ++i) x[i] = -INFINITY;
            }
            const float* d_logits = r.device(logits, size_t(rows * vocab));
            int32_t* out = r.poisoned<int32_t>(size_t(rows));
            int32_t* ref = r.host<int32_t>(size_t(rows));
            r.launch = [=](cudaStream_t s) { return launch_argmax_f32(d_logits, out, rows, vocab, s); };
            r.reference = [=] { argmax_ref(logits, ref, rows, vocab); };
            r.expect("ids", Elem::i32, out, ref, Elem::i32, size_t(rows), kExact);
            r.bytes = double(rows * vocab * 4 + rows * 4);
            return r;
          }};
}

}  // namespace

void add_norm_and_elementwise_cases(std::vector<OpCase>& t) {
  // rmsnorm.cu: one block per row. add_rmsnorm.cu: 4096 and 16384 (aligned, % 4) take the wide
  // float4 kernel, 111, 500 and 1001 the general one; 4100 the wide one unless out is shifted.
  for (int64_t n : kTokens)
    for (int64_t hidden : {111, 500, 4096}) t.push_back(rmsnorm_case<float>(n, hidden));
  t.push_back(rmsnorm_case<float>(19, 16384));
  for (int64_t n : kTokens)
    for (int64_t hidden : {1000, 1001, 4096, 4100}) t.push_back(rmsnorm_case<uint16_t>(n, hidden));
  for (int64_t n : kTokens)
    for (int64_t hidden : {111, 500, 4096}) t.push_back(add_rmsnorm_case<float>(n, hidden));
  for (int64_t n : {1, 19, 99}) t.push_back(add_rmsnorm_case<float>(n, 16384));
  for (int64_t n : kTokens)
    for (int64_t hidden : {1000, 1001, 4096, 4100}) t.push_back(add_rmsnorm_case<uint16_t>(n, hidden));
  for (int64_t n : {19, 99})
    for (int64_t hidden : {1000, 4096, 4100}) t.push_back(add_rmsnorm_case<uint16_t>(n, hidden, 1));

  for (int64_t n : kTokens)
    for (int64_t hidden : {111, 4096}) t.push_back(silu_and_mul_case(n, hidden));
  for (int64_t n : kTokens)
    for (int64_t inter : {111, 500, 1001, 4096}) t.push_back(silu_and_mul_packed_case<float>(n, inter));
  for (int64_t n : kTokens)
    for (int64_t inter : {111, 1000, 1001, 4096}) t.push_back(silu_and_mul_packed_case<uint16_t>(n, inter));
  for (int64_t n : {1, 19, 99, 300})
    for (int64_t inter : {344, 1000, 1001, 1376}) t.push_back(silu_and_mul_packed_bf16_case(n, inter));
  for (int64_t n : kTokens)
    for (int64_t hidden : {111, 4096}) t.push_back(add_case(n, hidden));
  for (int64_t rows : kTokens)
    for (int64_t cols : {7, 500}) t.push_back(add_bias_case(rows, cols));
  for (int64_t count : {1, 19 * 111, 989 * 4096}) t.push_back(f32_to_bf16_case(count));
  for (int64_t count : {1, 19 * 111, 989 * 4096}) t.push_back(bf16_to_f32_case(count));
  t.push_back(bf16_to_f32_case(4096, 1));

  for (int64_t n : kTokens)
    for (int64_t hidden : {111, 4096}) t.push_back(embedding_case<float>(n, hidden));
  for (int64_t n : kTokens)
    for (int64_t hidden : {111, 4096, 7168 + 8}) t.push_back(embedding_case<uint16_t>(n, hidden));
  for (int64_t n : kTokens)
    for (int64_t dim : {111, 1001, 4096}) t.push_back(gather_rows_case<float>(n, dim));
  for (int64_t n : kTokens)
    for (int64_t dim : {1001, 4096}) t.push_back(gather_rows_case<uint16_t>(n, dim));
  for (int64_t rows : {1, 19, 99})
    for (int64_t vocab : {1, 333, 32000}) t.push_back(argmax_case(rows, vocab));
  t.push_back(argmax_case(989, 333));
}

}  // namespace troupe::backend_ops

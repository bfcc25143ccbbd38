// Op table rows: the bf16-weight GEMV (fp32 and bf16 activations; decode shapes, pointers off
// 16-byte alignment) against gemv_bf16_ref's fp64 sums, and greedy device sampling.
#include <cmath>

#include "kernels/gemv.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/sampling.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

struct GemvShape {
  int64_t n, out_features, in_features, weight_shift, x_shift;  // shifts in elements
};

std::string gemv_sizes(const GemvShape& c) {
  std::string s = sizes({{"n", c.n}, {"out", c.out_features}, {"in", c.in_features}});
  if (c.weight_shift) s += " w+" + std::to_string(c.weight_shift);
  if (c.x_shift) s += " x+" + std::to_string(c.x_shift);
  return s;
}

// fp32 accumulation against an fp64 sum of the same bf16 weights: a lane adds <= in / 32 terms, then
// a few tree levels; relative error ~1e-6 at worst, NMSE ~1e-12.
OpCase gemv_case(GemvShape c) {
  return {"gemv_bf16", "f32 x", gemv_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const size_t x_count = size_t(c.n * c.in_features), w_count = size_t(c.out_features * c.in_features);
            const size_t out_count = size_t(c.n * c.out_features);
            float* x = r.host<float>(x_count);
            uint16_t* w = r.host<uint16_t>(w_count);
            float* bias = r.host<float>(size_t(c.out_features));
            fill_normal(x, x_count, rng);  // full fp32 values
            fill_bf16_normal(w, w_count, rng);
            fill_normal(bias, size_t(c.out_features), rng);
            const float* dx = r.device(x, x_count, size_t(c.x_shift));
            const uint16_t* dw = r.device(w, w_count, size_t(c.weight_shift));
            const float* d_bias = r.device(bias, size_t(c.out_features));
            float* out = r.poisoned<float>(out_count);
            double* ref = r.host<double>(out_count);
            r.launch = [=](cudaStream_t s) {
              return launch_gemv_bf16(dx, dw, d_bias, out, c.n, c.out_features, c.in_features, s);
            };
            r.reference = [=] { gemv_bf16_ref(x, w, bias, ref, nullptr, c.n, c.out_features, c.in_features); };
            r.expect("out", Elem::f32, out, ref, Elem::f64, out_count, kF32Tolerance);
            r.bytes = double(w_count * 2 + x_count * 4 + out_count * 4);
            return r;
          }};
}

OpCase gemv_x16_case(GemvShape c) {
  return {"gemv_bf16", "bf16 x", gemv_sizes(c), [=](std::mt19937& rng) {
            OpRun r;
            const size_t x_count = size_t(c.n * c.in_features), w_count = size_t(c.out_features * c.in_features);
            const size_t out_count = size_t(c.n * c.out_features);
            uint16_t* x_bits = r.host<uint16_t>(x_count);
            float* x = r.host<float>(x_count);
            uint16_t* w = r.host<uint16_t>(w_count);
            fill_bf16_normal(x_bits, x_count, rng);
            for (size_t i = 0; i < x_count; ++i) x[i] = host_bf16_to_f32(x_bits[i]);
            fill_bf16_normal(w, w_count, rng);
            const uint16_t* dx = r.device(x_bits, x_count, size_t(c.x_shift));
            const uint16_t* dw = r.device(w, w_count, size_t(c.weight_shift));
            float* out = r.poisoned<float>(out_count);
            double* ref = r.host<double>(out_count);
            r.launch = [=](cudaStream_t s) {
              return launch_gemv_bf16_x16(dx, dw, nullptr, out, c.n, c.out_features, c.in_features, s);
            };
            r.reference = [=] { gemv_bf16_ref(x, w, nullptr, ref, nullptr, c.n, c.out_features, c.in_features); };
            r.expect("out", Elem::f32, out, ref, Elem::f64, out_count, kF32Tolerance);
            r.bytes = double(w_count * 2 + x_count * 2 + out_count * 4);
            return r;
          }};
}

// Greedy rows (temperature 0) of launch_sample_f32: every 3rd row with ties, every 4th with -inf
// entries, row 5 with a NaN and row 7 all -inf (both -1), row 11 with a +inf (-1: no finite max).
OpCase sample_greedy_case(int64_t rows, int64_t vocab) {
  return {"sample", "f32 greedy", sizes({{"rows", rows}, {"vocab", vocab}}), [=](std::mt19937& rng) {
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
              if (row == 11) x[vocab - 1] = INFINITY;
            }
            SampleRow* params = r.host<SampleRow>(size_t(rows));
            for (int64_t row = 0; row < rows; ++row) params[row].temperature = 0.0;
            const size_t workspace_bytes = sample_workspace_bytes(params, rows, vocab);
            void* workspace = r.poisoned<unsigned char>(workspace_bytes);
            const float* d_logits = r.device(logits, size_t(rows * vocab));
            int32_t* out = r.poisoned<int32_t>(size_t(rows));
            int32_t* ref = r.host<int32_t>(size_t(rows));
            r.launch = [=](cudaStream_t s) {
              return launch_sample_f32(d_logits, params, rows, vocab, out, workspace, workspace_bytes, s);
            };
            r.reference = [=] { sample_greedy_ref(logits, ref, rows, vocab); };
            r.expect("ids", Elem::i32, out, ref, Elem::i32, size_t(rows), kExact);
            r.bytes = double(rows * vocab * 4 + rows * 4);
            return r;
          }};
}

}  // namespace

void add_gemv_and_sampling_cases(std::vector<OpCase>& t) {
  // Decode shapes (many blocks, every split of in_features across warps), weights and activations
  // off 16-byte alignment (the scalar path), odd widths.
  const GemvShape f32_x[] = {
      {1, 1024, 4096, 0, 0}, {8, 1024, 4096, 0, 0}, {1, 4096, 4096, 0, 0}, {4, 4090, 512, 0, 0},
      {8, 128256, 64, 0, 0}, {2, 130, 14336, 0, 0}, {3, 130, 1024, 1, 0},  {5, 989, 1024, 0, 1},
      {8, 7, 4096 + 8, 4, 2}, {1, 33, 72, 8, 4},    {3, 989, 19, 0, 0},    {5, 7, 99, 0, 0},
  };
  for (const GemvShape& c : f32_x) t.push_back(gemv_case(c));
  const GemvShape bf16_x[] = {{1, 1024, 4096, 0, 0}, {8, 1024, 4096, 0, 0}, {2, 130, 14336, 0, 0},
                              {5, 989, 1024, 0, 1},  {3, 33, 72, 0, 4},     {7, 7, 99, 0, 0}};
  for (const GemvShape& c : bf16_x) t.push_back(gemv_x16_case(c));
  for (int64_t vocab : {1, 19, 1000, 32000}) t.push_back(sample_greedy_case(19, vocab));
  t.push_back(sample_greedy_case(4, 151936));
}

}  // namespace troupe::backend_ops

#pragma once
// The op table (llama.cpp's test-backend-ops): every kernel launcher of kernels/ against its CPU
// reference, one row per {op, dtype variant, awkward sizes}. A row builds an OpRun: random inputs
// on the host and the device, outputs poisoned with NaN (all-ones bits), the launch, and the CPU
// reference that fills the expected outputs. tests/gpu/backend_ops_test.cpp checks every row;
// bench/backend_ops_bench.cpp times the same rows (GB/s).
//
// One error measure: NMSE = sum((actual - expected)^2) / sum(expected^2) over an output, against
// the row's stated tolerance (and, where an output asks for it, over each of its rows too). Tolerance 0 means bit-identical (copies, conversions, writes whose
// rounding is the same function on both sides, argmax ids). Where the expected value is NaN (a
// poisoned slot the kernel must not touch, or a row it must not write) the actual must be NaN
// too; an actual NaN or inf anywhere else fails the row.
//
// No gtest and no runtime/ here: only kernels/ and the CUDA runtime, so the bench shares it.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace troupe::backend_ops {

// Typical tolerances (NMSE). fp32 results that differ from the reference only in summation order,
// rsqrtf/expf/__expf against libm (a few ulp): ~1e-14 measured scale, so 1e-10 leaves room.
constexpr double kF32Tolerance = 1e-10;
// Outputs rounded to bf16 on both sides from fp32 values that differ by a few ulp: equal, or one
// bf16 ulp (2^-8 relative) apart where a rounding boundary falls between them (~1e-4 of values):
// NMSE ~1e-9; 1e-5 is the bar a wrong rounding mode (1e-5..1e-4) or a missed element would cross.
constexpr double kBf16Tolerance = 1e-5;
// The tensor-core prefill rounds q, k, v and the probabilities to bf16 (rms relative error ~1.6e-3
// each, four such terms): NMSE ~1e-5 against the fp32/fp64 reference.
constexpr double kPrefillTolerance = 2e-4;
constexpr double kExact = 0.0;

enum class Elem { f32, bf16, i32, f64, e4m3 };  // e4m3: FP8 bytes, compared as their values

// One output of a row: where the kernel wrote it, and what the reference says.
struct Output {
  std::string name;
  Elem elem = Elem::f32;           // of the device data
  const void* device = nullptr;
  const void* expected = nullptr;  // host, `expected_elem`
  Elem expected_elem = Elem::f32;
  size_t count = 0;
  double tolerance = 0;            // NMSE; 0: bit-identical
  // With row_size > 0, each run of row_size elements (one row, e.g. a (token, head) of attention)
  // must also be within row_tolerance NMSE of its reference row: an error confined to one row is
  // not averaged away by the others. Rows whose reference is all NaN are skipped.
  size_t row_size = 0;
  double row_tolerance = 0;
};

// A row, built: owns its host and device buffers.
struct OpRun {
  std::function<cudaError_t(cudaStream_t)> launch;  // the launcher under test
  std::function<void()> reference;                  // fills the expected outputs on the host
  std::vector<Output> outputs;
  double bytes = 0;   // bytes one launch reads and writes (the bench's GB/s)
  std::string error;  // a failed allocation or copy while building

  // Host arrays the lambdas point into (stable addresses), filled with `fill`.
  template <class T>
  T* host(size_t count, T fill = T()) {
    auto v = std::make_shared<std::vector<T>>(count, fill);
    keep_.push_back(v);
    return v->data();
  }
  // A device copy of host[0, count), `shift` elements past a 256-byte aligned allocation (so
  // shift 1 misaligns it).
  template <class T>
  T* device(const T* src, size_t count, size_t shift = 0) {
    T* d = static_cast<T*>(device_bytes((count + shift) * sizeof(T))) + shift;
    copy_up(d, src, count * sizeof(T));
    return d;
  }
  // A device array of all-ones bits (NaN in fp32 and bf16).
  template <class T>
  T* poisoned(size_t count, size_t shift = 0) {
    T* d = static_cast<T*>(device_bytes((count + shift) * sizeof(T))) + shift;
    poison(d, count * sizeof(T));
    return d;
  }
  void expect(std::string name, Elem elem, const void* device, const void* expected, Elem expected_elem, size_t count,
              double tolerance) {
    outputs.push_back({std::move(name), elem, device, expected, expected_elem, count, tolerance});
  }
  // expect() plus the per-row bound (Output::row_size).
  void expect_rows(std::string name, Elem elem, const void* device, const void* expected, Elem expected_elem,
                   size_t count, double tolerance, size_t row_size, double row_tolerance) {
    expect(std::move(name), elem, device, expected, expected_elem, count, tolerance);
    outputs.back().row_size = row_size;
    outputs.back().row_tolerance = row_tolerance;
  }

 private:
  void* device_bytes(size_t bytes);
  void copy_up(void* dst, const void* src, size_t bytes);
  void poison(void* dst, size_t bytes);
  std::vector<std::shared_ptr<void>> keep_;
};

struct OpCase {
  std::string op;       // the kernel family's op, e.g. "add_rmsnorm"
  std::string variant;  // dtypes, e.g. "f32->bf16", "bf16 cache"
  std::string sizes;    // e.g. "n=19 hidden=111"
  std::function<OpRun(std::mt19937& rng)> make;
  std::string key() const;  // op_variant as an identifier: "add_rmsnorm_f32_to_bf16"
};

// Every row, in a fixed order (built once; making a run needs a GPU, listing doesn't).
const std::vector<OpCase>& op_table();
// The distinct keys, in table order.
std::vector<std::string> op_keys();
// The rows of the table's part (defined in backend_ops_*.cpp).
void add_norm_and_elementwise_cases(std::vector<OpCase>& table);
void add_rope_and_kv_cases(std::vector<OpCase>& table);
void add_attention_cases(std::vector<OpCase>& table);
void add_gemv_and_sampling_cases(std::vector<OpCase>& table);
void add_mla_cases(std::vector<OpCase>& table);
void add_mla_prefill_cases(std::vector<OpCase>& table);
void add_mla_absorb_cases(std::vector<OpCase>& table);
void add_fp8_cases(std::vector<OpCase>& table);
void add_moe_cases(std::vector<OpCase>& table);

// NMSE of one output; inf on a NaN/inf mismatch. `actual` holds the device bytes copied back.
double nmse(const Output& out, const void* actual);
// NMSE of elements [first, first + count) of an output, as nmse().
double nmse(const Output& out, const void* actual, size_t first, size_t count);
// Copies the output back and compares: "" when within tolerance, else what failed.
std::string check_output(const Output& out, double* measured);

// Random fill helpers.
void fill_normal(float* x, size_t count, std::mt19937& rng, float stddev = 1.0f);
void fill_bf16_normal(uint16_t* x, size_t count, std::mt19937& rng, float stddev = 1.0f);
// N(0, 3) values with, every 5th, a bf16 rounding special: exact ties (even and odd kept halves),
// near-ties, a subnormal tie, values that round up across a binade or to infinity.
void fill_awkward(float* x, size_t count, std::mt19937& rng);
// All-ones bits: what poisoned() fills device arrays with, for host copies of a poisoned output.
template <class T>
T poison_value() {
  T v;
  std::memset(&v, 0xff, sizeof(v));
  return v;
}
// "n=19 hidden=111".
std::string sizes(std::initializer_list<std::pair<const char*, int64_t>> dims);

}  // namespace troupe::backend_ops

// The op table's harness (backend_ops_table.hpp): device buffers, the error measure, the row list.
#include "tests/gpu/backend_ops_table.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"

namespace troupe::backend_ops {

void* OpRun::device_bytes(size_t bytes) {
  void* d = nullptr;
  const cudaError_t err = cudaMalloc(&d, bytes == 0 ? 1 : bytes);
  if (err != cudaSuccess) {
    if (error.empty()) error = std::string("cudaMalloc: ") + cudaGetErrorString(err);
    static double dummy[64];  // keeps the builder going; the row reports `error` instead of running
    return dummy;
  }
  keep_.push_back(std::shared_ptr<void>(d, [](void* p) { cudaFree(p); }));
  return d;
}

void OpRun::copy_up(void* dst, const void* src, size_t bytes) {
  if (!error.empty() || bytes == 0) return;
  const cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
  if (err != cudaSuccess) error = std::string("cudaMemcpy: ") + cudaGetErrorString(err);
}

void OpRun::poison(void* dst, size_t bytes) {
  if (!error.empty() || bytes == 0) return;
  const cudaError_t err = cudaMemset(dst, 0xff, bytes);
  if (err != cudaSuccess) error = std::string("cudaMemset: ") + cudaGetErrorString(err);
}

std::string OpCase::key() const {
  std::string k = op + "_" + variant;
  std::string out;
  for (size_t i = 0; i < k.size(); ++i) {
    if (k.compare(i, 2, "->") == 0) {
      out += "_to_";
      ++i;
    } else {
      const char c = k[i];
      out += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
    }
  }
  return out;
}

const std::vector<OpCase>& op_table() {
  static const std::vector<OpCase> table = [] {
    std::vector<OpCase> t;
    add_norm_and_elementwise_cases(t);
    add_rope_and_kv_cases(t);
    add_attention_cases(t);
    add_gemv_and_sampling_cases(t);
    add_mla_cases(t);
    add_mla_prefill_cases(t);
    add_mla_absorb_cases(t);
    add_fp8_cases(t);
    add_moe_cases(t);
    return t;
  }();
  return table;
}

std::vector<std::string> op_keys() {
  std::vector<std::string> keys;
  for (const OpCase& c : op_table())
    if (std::find(keys.begin(), keys.end(), c.key()) == keys.end()) keys.push_back(c.key());
  return keys;
}

namespace {

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

size_t elem_bytes(Elem e) {
  switch (e) {
    case Elem::bf16: return 2;
    case Elem::e4m3: return 1;
    case Elem::f64: return 8;
    default: return 4;
  }
}

double value_at(Elem e, const void* p, size_t i) {
  switch (e) {
    case Elem::f32: return static_cast<const float*>(p)[i];
    case Elem::bf16: return kernels::host_bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case Elem::i32: return static_cast<const int32_t*>(p)[i];
    case Elem::f64: return static_cast<const double*>(p)[i];
    case Elem::e4m3: return kernels::host_e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
  }
  return NAN;
}

}  // namespace

double nmse(const Output& out, const void* actual) { return nmse(out, actual, 0, out.count); }

double nmse(const Output& out, const void* actual, size_t first, size_t count) {
  double err = 0, ref = 0;
  for (size_t i = first; i < first + count; ++i) {
    const double a = value_at(out.elem, actual, i), b = value_at(out.expected_elem, out.expected, i);
    if (std::isnan(b)) {
      if (!std::isnan(a)) return INFINITY;  // written where it must not be
      continue;
    }
    if (!std::isfinite(a) || !std::isfinite(b)) {
      if (a != b) return INFINITY;
      continue;
    }
    err += (a - b) * (a - b);
    ref += b * b;
  }
  return ref > 0 ? err / ref : err;
}

std::string check_output(const Output& out, double* measured) {
  std::vector<unsigned char> actual(out.count * elem_bytes(out.elem));
  const cudaError_t err = cudaMemcpy(actual.data(), out.device, actual.size(), cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) return out.name + ": cudaMemcpy: " + cudaGetErrorString(err);
  const double e = nmse(out, actual.data());
  if (measured) *measured = e;
  if (out.tolerance == 0) {
    if (out.elem != out.expected_elem) return out.name + ": bit-identical needs one element type";
    if (std::memcmp(actual.data(), out.expected, actual.size()) != 0) {
      for (size_t i = 0; i < out.count; ++i) {
        const size_t b = elem_bytes(out.elem);
        if (std::memcmp(actual.data() + i * b, static_cast<const unsigned char*>(out.expected) + i * b, b) != 0)
          return out.name + ": not bit-identical, first at element " + std::to_string(i) + " (" +
                 fmt(value_at(out.elem, actual.data(), i)) + " vs " + fmt(value_at(out.expected_elem, out.expected, i)) +
                 ")";
      }
    }
    return "";
  }
  if (!(e <= out.tolerance))
    return out.name + ": NMSE " + fmt(e) + " above " + fmt(out.tolerance);
  if (out.row_size > 0) {
    double worst = 0;
    size_t worst_row = 0;
    for (size_t first = 0; first + out.row_size <= out.count; first += out.row_size) {
      const double row = nmse(out, actual.data(), first, out.row_size);
      if (!(row <= worst)) {  // NaN counts as worst
        worst = row;
        worst_row = first / out.row_size;
      }
    }
    if (!(worst <= out.row_tolerance))
      return out.name + ": row " + std::to_string(worst_row) + " NMSE " + fmt(worst) + " above " +
             fmt(out.row_tolerance);
  }
  return "";
}

void fill_normal(float* x, size_t count, std::mt19937& rng, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  for (size_t i = 0; i < count; ++i) x[i] = normal(rng);
}

void fill_bf16_normal(uint16_t* x, size_t count, std::mt19937& rng, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  for (size_t i = 0; i < count; ++i) x[i] = kernels::host_f32_to_bf16(normal(rng));
}

void fill_awkward(float* x, size_t count, std::mt19937& rng) {
  static const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0xbf7fffffu,
                                     0x7f7fffffu, 0x00008000u, 0x80018000u, 0x42c78000u, 0x3f800000u};
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (size_t i = 0; i < count; ++i)
    x[i] = i % 5 == 0 ? std::bit_cast<float>(special[(i / 5) % std::size(special)]) : normal(rng);
}

std::string sizes(std::initializer_list<std::pair<const char*, int64_t>> dims) {
  std::string s;
  for (const auto& [name, value] : dims) s += (s.empty() ? "" : " ") + std::string(name) + "=" + std::to_string(value);
  return s;
}

}  // namespace troupe::backend_ops

#include "models/dummy_weights.hpp"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "models/kv_cache_scales.hpp"

namespace troupe {
namespace {

// splitmix64's finalizer: a fast counter-based mix.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Fills out[begin, end) with offset + scale * unit value.
void fill_range(float* out, uint64_t name_hash, int64_t begin, int64_t end, float offset, float scale) {
  for (int64_t i = begin; i < end; ++i) out[i] = offset + scale * dummy_unit_value(name_hash, uint64_t(i));
}

// An FP8 projection weight? (what an fp8 checkpoint quantizes: the attention and MLP projections)
bool is_fp8_projection(const std::string& name, const std::vector<int64_t>& shape) {
  return shape.size() == 2 && (ends_with(name, "_proj.weight") || ends_with(name, "_proj_with_mqa.weight"));
}

// e4m3 bytes of magnitude 2^-3 .. 2^1 * 1.875 (exponent field 4..8), random sign and mantissa.
void fill_fp8_range(uint8_t* out, uint64_t name_hash, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const uint64_t bits = mix64(name_hash ^ mix64(uint64_t(i)));
    const uint8_t exponent = uint8_t(4 + (bits >> 8) % 5);
    out[i] = uint8_t((bits & 0x80u) | (exponent << 3) | ((bits >> 16) & 0x7u));
  }
}

Tensor fp8_block_weight(const std::vector<int64_t>& shape, uint64_t hash, float scale, int threads) {
  Tensor t = Tensor::empty(DType::f8_e4m3, shape);
  const int64_t n = t.numel();
  uint8_t* out = t.data<uint8_t>();
  std::vector<std::thread> pool;
  const int64_t per = (n + threads - 1) / threads;
  for (int w = 0; w < threads; ++w) {
    const int64_t begin = std::min(n, w * per), end = std::min(n, begin + per);
    pool.emplace_back(fill_fp8_range, out, hash, begin, end);
  }
  for (auto& th : pool) th.join();
  const int64_t rows = (shape[0] + 127) / 128, cols = (shape[1] + 127) / 128;
  Tensor s = Tensor::empty(DType::f32, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) s.data<float>()[i] = scale / 2.0f;  // bytes up to 2: values up to scale
  t.set_block_scale(std::move(s));
  return t;
}

}  // namespace

uint64_t dummy_name_hash(const std::string& name, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ mix64(seed);  // FNV-1a over the name, then mixed
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix64(h);
}

float dummy_unit_value(uint64_t name_hash, uint64_t index) {
  const uint64_t bits = mix64(name_hash ^ mix64(index));
  // The top 24 bits as a fraction in [0, 1), mapped to [-1, 1).
  return float(bits >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

WeightLoader dummy_weight_loader(DummyWeightOptions options) {
  int threads = options.num_threads;
  if (threads <= 0) threads = int(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
  return [options, threads](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
    for (int64_t d : shape) {
      if (d <= 0) return make_error(ErrorCode::invalid_argument, "dummy weight " + name + ": non-positive shape");
    }
    // A checkpoint without fp8 KV cache scales (random ones would be no scales at all): the
    // model then uses 1, vLLM's default.
    if (is_kv_cache_scale_name(name))
      return make_error(ErrorCode::not_found, "dummy weights have no KV cache scale '" + name + "'");
    const uint64_t hash = dummy_name_hash(name, options.seed);
    if (options.fp8_blocks && is_fp8_projection(name, shape))
      return fp8_block_weight(shape, hash, options.scale, threads);
    Tensor t = Tensor::empty(DType::f32, shape);
    const int64_t n = t.numel();
    const float offset = ends_with(name, "norm.weight") ? 1.0f : 0.0f;
    float* out = t.data<float>();
    const int64_t chunk = int64_t(1) << 20;
    const int use = int(std::min<int64_t>(threads, (n + chunk - 1) / chunk));
    if (use <= 1) {
      fill_range(out, hash, 0, n, offset, options.scale);
      return t;
    }
    std::vector<std::thread> pool;
    const int64_t per = (n + use - 1) / use;
    for (int w = 0; w < use; ++w) {
      const int64_t begin = std::min(n, w * per), end = std::min(n, begin + per);
      pool.emplace_back(fill_range, out, hash, begin, end, offset, options.scale);
    }
    for (auto& th : pool) th.join();
    return t;
  };
}

}  // namespace troupe

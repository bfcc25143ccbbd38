#include "models/dummy_weights.hpp"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

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
    Tensor t = Tensor::empty(DType::f32, shape);
    const int64_t n = t.numel();
    const uint64_t hash = dummy_name_hash(name, options.seed);
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

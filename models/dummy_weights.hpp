#pragma once
// Random weights from config.json alone (vLLM's `--load-format dummy`): for benchmarks and smoke
// tests without a checkpoint. Deterministic: a value depends only on (seed, tensor name, index).
#include <cstdint>
#include <string>

#include "runtime/model.hpp"

namespace troupe {

struct DummyWeightOptions {
  uint64_t seed = 0;
  float scale = 0.02f;    // matrices and biases: uniform in [-scale, scale]
  int num_threads = 0;    // 0: hardware concurrency (capped at 16)
  // Projection weights ("*_proj.weight", "*_proj_with_mqa.weight", 2-D) as F8_E4M3 with 128x128
  // block scales (Tensor::block_scale), as an fp8 checkpoint stores them: magnitudes scale / 16
  // to 1.9 * scale, random signs.
  bool fp8_blocks = false;
};

// A WeightLoader that serves any requested name and shape as an fp32 host tensor (or FP8, above).
// Norm weights (names ending in "norm.weight") are 1 + uniform[-scale, scale]; biases and matrices
// uniform.
WeightLoader dummy_weight_loader(DummyWeightOptions options = {});

// The uniform value in [-1, 1) the loader uses for element `index` of the tensor whose name hashes
// to `name_hash` (exposed for tests).
float dummy_unit_value(uint64_t name_hash, uint64_t index);
uint64_t dummy_name_hash(const std::string& name, uint64_t seed);

}  // namespace troupe

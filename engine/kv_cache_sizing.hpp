#pragma once
// How many KV-cache blocks fit beside a loaded model: --num-kv-blocks when given; on the CPU
// --cpu-kv-cache-mb; on a GPU --gpu-memory-utilization of the device minus what is in use after a
// warm-up step (weights + the peak activations of a --max-num-batched-tokens step; the device's
// memory pool keeps its high-water mark), as vLLM profiles memory before sizing its cache.
#include <cstdint>

#include "runtime/backend.hpp"
#include "runtime/config.hpp"
#include "runtime/model.hpp"
#include "runtime/result.hpp"

namespace troupe {

// Blocks for the layers `model` holds (one pipeline stage holds fewer layers, so more blocks fit).
// out_of_resources when not even one block fits; the message names the flag to change.
Result<int64_t> kv_blocks_that_fit(const Config& config, Backend& backend, Model& model);

}  // namespace troupe

#pragma once
// Rotary position embedding frequencies, as Hugging Face computes them for Llama / Qwen2.
#include <cstdint>
#include <vector>

#include "runtime/dtype.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

// inv_freq[i] = 1 / theta^(2i / rotary_dim), i in [0, rotary_dim / 2), then scaled:
//   "linear": divided by factor (same as dividing positions by factor);
//   "llama3": wavelengths 2*pi/inv_freq longer than original_max / low_freq_factor are divided by
//   factor, shorter than original_max / high_freq_factor kept, and those between interpolated with
//   smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor):
//   (1 - smooth) * inv_freq / factor + smooth * inv_freq.
std::vector<float> rope_inv_freq(int64_t rotary_dim, double theta, const RopeScaling& scaling);

}  // namespace troupe

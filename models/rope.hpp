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

// YaRN's mscale: 0.1 * mscale * ln(factor) + 1 for factor > 1, else 1.
double yarn_mscale(double factor, double mscale);

// YaRN (transformers' _compute_yarn_parameters, DeepSeek-V3): with pos_freqs[i] = theta^(2i / dim),
// extrapolation = 1 / pos_freqs, interpolation = 1 / (factor * pos_freqs), and the correction range
// [low, high] = [floor(d(beta_fast)), ceil(d(beta_slow))] clamped to [0, dim - 1], where
// d(r) = dim * ln(original_max / (r * 2 pi)) / (2 ln theta); ramp[i] = clamp((i - low) / (high - low), 0, 1)
// (high += 0.001 when equal): inv_freq = interpolation * ramp + extrapolation * (1 - ramp).
// factor is max_position_embeddings / original_max_position_embeddings, as transformers takes it.
std::vector<float> yarn_inv_freq(int64_t rotary_dim, double theta, double factor, const RopeScaling& scaling);

// YaRN's cos/sin scale: yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim) when both
// are set (non-zero), else yarn_mscale(factor, 1).
double yarn_attention_factor(double factor, const RopeScaling& scaling);

}  // namespace troupe

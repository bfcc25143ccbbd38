#include "models/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace troupe {

std::vector<float> rope_inv_freq(int64_t rotary_dim, double theta, const RopeScaling& scaling) {
  std::vector<float> inv_freq(static_cast<size_t>(rotary_dim / 2));
  for (int64_t i = 0; i < rotary_dim / 2; ++i) {
    // HF: exponent computed in fp32, power and reciprocal in fp32.
    const float exponent = float(2 * i) / float(rotary_dim);
    inv_freq[size_t(i)] = 1.0f / std::pow(float(theta), exponent);
  }
  if (scaling.type == "linear") {
    for (float& f : inv_freq) f = float(f / scaling.factor);
  } else if (scaling.type == "llama3") {
    const double old_len = double(scaling.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / scaling.low_freq_factor;
    const double high_freq_wavelen = old_len / scaling.high_freq_factor;
    for (float& f : inv_freq) {
      const double wavelen = 2.0 * std::numbers::pi / double(f);
      if (wavelen > low_freq_wavelen) {
        f = float(double(f) / scaling.factor);
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth =
            (old_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor);
        f = float((1.0 - smooth) * double(f) / scaling.factor + smooth * double(f));
      }
    }
  }
  return inv_freq;
}

double yarn_mscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

std::vector<float> yarn_inv_freq(int64_t rotary_dim, double theta, double factor, const RopeScaling& scaling) {
  const double dim = double(rotary_dim), original = double(scaling.original_max_position_embeddings);
  auto correction_dim = [&](double num_rotations) {
    return dim * std::log(original / (num_rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(theta));
  };
  const double low = std::max(std::floor(correction_dim(scaling.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(scaling.beta_slow)), dim - 1.0);
  if (low == high) high += 0.001;
  std::vector<float> inv_freq(static_cast<size_t>(rotary_dim / 2));
  for (int64_t i = 0; i < rotary_dim / 2; ++i) {
    // fp32 as transformers computes them.
    const float pos_freq = std::pow(float(theta), float(2 * i) / float(rotary_dim));
    const float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / (float(factor) * pos_freq);
    const float ramp = std::clamp(float((double(i) - low) / (high - low)), 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    inv_freq[size_t(i)] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  return inv_freq;
}

double yarn_attention_factor(double factor, const RopeScaling& scaling) {
  if (scaling.mscale != 0.0 && scaling.mscale_all_dim != 0.0)
    return yarn_mscale(factor, scaling.mscale) / yarn_mscale(factor, scaling.mscale_all_dim);
  return yarn_mscale(factor, 1.0);
}


}  // namespace troupe

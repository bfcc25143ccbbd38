#include "models/rope.hpp"

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


}  // namespace troupe

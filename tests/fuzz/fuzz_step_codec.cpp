// Bytes that cross processes between pipeline stages: the step codec (pipeline/step_codec: step
// metadata + hidden states, and logits back) and the actor API's tensor frames (api/tensor_frame).
// The first byte picks the decoder; a message that decodes is encoded again and must decode again
// to the same shape (reserved header fields are ignored, so the bytes may differ).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "api/tensor_frame.hpp"
#include "pipeline/step_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::vector<uint8_t> bytes(data + 1, data + size);
  switch (data[0] % 3) {
    case 0: {
      auto step = troupe::cluster::decode_step(bytes);
      if (!step.ok()) return 0;
      auto again = troupe::cluster::encode_step(step->step_id, step->batch, step->mode, step->batch.hidden_states);
      if (!troupe::cluster::decode_step(again).ok()) std::abort();
      return 0;
    }
    case 1: {
      auto logits = troupe::cluster::decode_logits(bytes, 7);
      if (!logits.ok()) return 0;
      auto again = troupe::cluster::decode_logits(troupe::cluster::encode_logits(7, logits.value()), 7);
      if (!again.ok() || again->shape() != logits->shape()) std::abort();
      return 0;
    }
    default: {
      auto tensor = troupe::api::detail::decode_frame(bytes.data(), bytes.size());
      if (!tensor.ok()) return 0;
      const std::vector<uint8_t> encoded = troupe::api::detail::encode_tensor(tensor.value());
      auto again = troupe::api::detail::decode_frame(encoded.data(), encoded.size());
      if (!again.ok() || again->shape != tensor->shape || again->data.size() != tensor->data.size()) std::abort();
      return 0;
    }
  }
}

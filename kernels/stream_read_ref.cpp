#include "kernels/stream_read.hpp"

namespace troupe::kernels {

uint32_t stream_read_ref(const uint32_t* data, size_t words) {
  uint32_t fold = 0;
  for (size_t i = 0; i < words * 4; ++i) fold ^= data[i];
  return fold;
}

}  // namespace troupe::kernels

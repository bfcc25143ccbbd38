#include "kernels/plain_launches.hpp"

namespace troupe::kernels {

bool& plain_launches_here() {
  thread_local bool plain = false;
  return plain;
}

}  // namespace troupe::kernels

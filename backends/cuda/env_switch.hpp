#pragma once
// The CUDA backend's A/B switches: environment variables read at each call (so a benchmark can time
// both sides in one process), each named where it is read.
#include <cstdlib>
#include <cstring>

namespace troupe::cuda {

// Whether the variable is set to exactly `value`.
inline bool env_is(const char* name, const char* value) {
  const char* env = std::getenv(name);
  return env && std::strcmp(env, value) == 0;
}

}  // namespace troupe::cuda

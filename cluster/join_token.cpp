#include "cluster/join_token.hpp"

#include <cstddef>

namespace troupe::cluster {

bool tokens_equal(std::string_view expected, std::string_view given) {
  // NOTE: every byte of the longer string is visited; differences accumulate with OR, no early exit.
  volatile unsigned char diff = expected.size() == given.size() ? 0 : 1;
  const size_t n = expected.size() > given.size() ? expected.size() : given.size();
  for (size_t i = 0; i < n; ++i) {
    unsigned char a = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
    unsigned char b = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | (a ^ b);
  }
  return diff == 0;
}

}  // namespace troupe::cluster

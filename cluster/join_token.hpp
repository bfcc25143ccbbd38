#pragma once
// The shared join token: compared in constant time so a wrong guess learns nothing from timing.
#include <string_view>

namespace troupe::cluster {

// True when `given` equals `expected`. The time taken depends only on the lengths, never on where
// the first differing byte is.
bool tokens_equal(std::string_view expected, std::string_view given);

}  // namespace troupe::cluster

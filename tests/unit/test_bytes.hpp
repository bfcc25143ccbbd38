#pragma once
// Test support: byte inputs written as text (fuzzer crash inputs kept as base64 in the tests).
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::testing {

inline std::vector<uint8_t> base64_decode(const std::string& text) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> out;
  uint32_t bits = 0;
  int num_bits = 0;
  for (char c : text) {
    if (c == '=') break;
    bits = (bits << 6) | uint32_t(alphabet.find(c));
    num_bits += 6;
    if (num_bits >= 8) {
      num_bits -= 8;
      out.push_back(uint8_t(bits >> num_bits));
    }
  }
  return out;
}

}  // namespace troupe::testing

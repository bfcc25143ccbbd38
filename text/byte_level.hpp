#pragma once
// GPT-2's byte <-> printable-character table: every byte maps to one code point so that byte
// strings become visible vocabulary entries (' ' -> 'Ġ', '\n' -> 'Ċ').
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

class ByteLevelTable {
 public:
  static const ByteLevelTable& get();

  // UTF-8 of the character that stands for byte b.
  std::string_view char_of(unsigned char b) const { return {chars_[b].data(), lengths_[b]}; }
  // Appends the mapped characters of raw bytes.
  void encode(std::string_view bytes, std::string& out) const;
  // Maps the characters of token back to bytes; false when a character is outside the table.
  bool decode(std::string_view token, std::string& out) const;

 private:
  ByteLevelTable();
  std::array<std::array<char, 2>, 256> chars_{};
  std::array<uint8_t, 256> lengths_{};
  std::array<int16_t, 324> byte_of_code_point_{};  // -1 when the code point is not in the table
};

}  // namespace troupe

#pragma once
// UTF-8 helpers shared by the tokenizer: decoding, encoding, validation and lossy repair.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::utf8 {

// Length of the sequence a lead byte starts (1 for ASCII and for invalid lead bytes).
inline size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// Decodes the code point at text[pos] (assumed valid) and advances pos.
uint32_t next_code_point(std::string_view text, size_t& pos);
void append_code_point(std::string& out, uint32_t code_point);

// Length of the longest valid UTF-8 prefix of text.
size_t valid_prefix_length(std::string_view text);
inline bool is_valid(std::string_view text) { return valid_prefix_length(text) == text.size(); }

// Replaces each maximal invalid subpart with U+FFFD (as Rust's String::from_utf8_lossy does).
std::string to_valid_lossy(std::string_view bytes);

// True when text ends with a sequence that more bytes could complete (a truncated character).
bool ends_with_incomplete_sequence(std::string_view text);

inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";

}  // namespace troupe::utf8

#include "text/utf8.hpp"

namespace troupe::utf8 {
namespace {

// Number of bytes of a valid sequence starting at text[pos]; for an invalid one, 0 and the length
// of its maximal invalid subpart in *invalid_length (truncated tails count as invalid here).
size_t valid_sequence_at(std::string_view text, size_t pos, size_t* invalid_length) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  *invalid_length = 1;
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    if (pos + i >= text.size()) {
      *invalid_length = i;
      return 0;
    }
    const unsigned char b = byte(pos + i);
    const unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xBF;
    if (b < lo || b > hi) {
      *invalid_length = i;
      return 0;
    }
  }
  return length;
}

}  // namespace

uint32_t next_code_point(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(text[i])); };
  const uint32_t lead = byte(pos);
  const size_t length = sequence_length(static_cast<unsigned char>(lead));
  if (length == 1 || pos + length > text.size()) {
    ++pos;
    return lead;
  }
  uint32_t cp = lead & (0xFF >> (length + 1));
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (byte(pos + i) & 0x3F);
  pos += length;
  return cp;
}

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t valid_prefix_length(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t invalid = 0;
    const size_t length = valid_sequence_at(text, pos, &invalid);
    if (length == 0) return pos;
    pos += length;
  }
  return pos;
}

std::string to_valid_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 8);
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t invalid = 0;
    const size_t length = valid_sequence_at(bytes, pos, &invalid);
    if (length > 0) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      out.append(replacement_character);
      pos += invalid;
    }
  }
  return out;
}

bool ends_with_incomplete_sequence(std::string_view text) {
  // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
  size_t back = 0;
  while (back < 4 && back < text.size()) {
    const unsigned char b = static_cast<unsigned char>(text[text.size() - 1 - back]);
    if ((b & 0xC0) != 0x80) {
      const size_t start = text.size() - 1 - back;
      size_t invalid = 0;
      if (valid_sequence_at(text, start, &invalid) != 0) return false;
      // Invalid: incomplete only when the whole tail is a valid prefix of a sequence.
      return b >= 0xC2 && b <= 0xF4 && start + invalid == text.size() && sequence_length(b) > back + 1;
    }
    ++back;
  }
  return false;
}

}  // namespace troupe::utf8

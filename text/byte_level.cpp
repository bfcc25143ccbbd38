#include "text/byte_level.hpp"

#include "text/utf8.hpp"

namespace troupe {

const ByteLevelTable& ByteLevelTable::get() {
  static const ByteLevelTable table;
  return table;
}

ByteLevelTable::ByteLevelTable() {
  byte_of_code_point_.fill(-1);
  // Printable bytes keep their code point; the others take 256, 257, ... in byte order.
  const auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
    std::string s;
    utf8::append_code_point(s, cp);
    lengths_[b] = static_cast<uint8_t>(s.size());
    for (size_t i = 0; i < s.size(); ++i) chars_[b][i] = s[i];
    byte_of_code_point_[cp] = static_cast<int16_t>(b);
  }
}

void ByteLevelTable::encode(std::string_view bytes, std::string& out) const {
  for (unsigned char b : bytes) out.append(chars_[b].data(), lengths_[b]);
}

bool ByteLevelTable::decode(std::string_view token, std::string& out) const {
  const size_t start = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const uint32_t cp = utf8::next_code_point(token, pos);
    if (cp >= byte_of_code_point_.size() || byte_of_code_point_[cp] < 0) {
      out.resize(start);
      return false;
    }
    out.push_back(static_cast<char>(byte_of_code_point_[cp]));
  }
  return true;
}

}  // namespace troupe

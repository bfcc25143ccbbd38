#include "text/token_decoder.hpp"

#include <cstdlib>

#include "text/byte_level.hpp"
#include "text/utf8.hpp"

namespace troupe {
namespace {

void replace_all(std::string& text, const std::string& pattern, const std::string& content) {
  if (pattern.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit = text.find(pattern); hit != std::string::npos; hit = text.find(pattern, pos)) {
    out.append(text, pos, hit - pos).append(content);
    pos = hit + pattern.size();
  }
  if (pos == 0) return;
  out.append(text, pos, std::string::npos);
  text = std::move(out);
}

// "<0xNN>" -> byte value, or -1.
int fallback_byte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  char* end = nullptr;
  const std::string hex = token.substr(3, 2);
  const long value = std::strtol(hex.c_str(), &end, 16);
  return end == hex.c_str() + 2 ? static_cast<int>(value) : -1;
}

void byte_level(std::vector<std::string>& tokens) {
  const ByteLevelTable& table = ByteLevelTable::get();
  std::string bytes;
  for (const auto& token : tokens)
    if (!table.decode(token, bytes)) bytes.append(token);  // not byte-level text: raw bytes
  tokens.assign(1, utf8::to_valid_lossy(bytes));
}

void byte_fallback(std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  std::string pending;  // consecutive fallback bytes
  size_t num_pending = 0;
  const auto flush = [&]() {
    if (num_pending == 0) return;
    if (utf8::is_valid(pending)) {
      out.push_back(pending);
    } else {
      for (size_t i = 0; i < num_pending; ++i) out.emplace_back(utf8::replacement_character);
    }
    pending.clear();
    num_pending = 0;
  };
  for (auto& token : tokens) {
    const int b = fallback_byte(token);
    if (b >= 0) {
      pending.push_back(static_cast<char>(b));
      ++num_pending;
    } else {
      flush();
      out.push_back(std::move(token));
    }
  }
  flush();
  tokens = std::move(out);
}

void strip(const DecoderStep& step, std::vector<std::string>& tokens) {
  for (auto& token : tokens) {
    size_t begin = 0, end = token.size();
    for (int i = 0; i < step.start && token.compare(begin, step.content.size(), step.content) == 0; ++i)
      begin += step.content.size();
    for (int i = 0; i < step.stop && end >= begin + step.content.size() &&
                    token.compare(end - step.content.size(), step.content.size(), step.content) == 0;
         ++i)
      end -= step.content.size();
    token = token.substr(begin, end - begin);
  }
}

}  // namespace

std::string TokenDecoder::decode(std::vector<std::string>& tokens) const {
  for (const auto& step : steps_) {
    switch (step.kind) {
      case DecoderStep::Kind::byte_level:
        byte_level(tokens);
        break;
      case DecoderStep::Kind::metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], step.pattern, " ");
          if (i == 0 && step.strip_first_space && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
        }
        break;
      case DecoderStep::Kind::replace:
        for (auto& token : tokens) replace_all(token, step.pattern, step.content);
        break;
      case DecoderStep::Kind::byte_fallback:
        byte_fallback(tokens);
        break;
      case DecoderStep::Kind::fuse: {
        std::string joined;
        for (const auto& token : tokens) joined += token;
        tokens.assign(1, std::move(joined));
        break;
      }
      case DecoderStep::Kind::strip:
        strip(step, tokens);
        break;
    }
  }
  if (steps_.empty()) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined.append(i ? " " : "").append(tokens[i]);
    return joined;
  }
  std::string joined;
  for (const auto& token : tokens) joined += token;
  return joined;
}

}  // namespace troupe

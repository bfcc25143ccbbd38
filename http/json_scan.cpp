#include "http/json_scan.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace troupe::http {
namespace {

constexpr int kMaxDepth = 64;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// A complete string literal's value; false when it does not decode (a lone surrogate escape).
bool decode_string(std::string_view literal, std::string& out) {
  nlohmann::json parsed = nlohmann::json::parse(literal, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_string()) return false;
  out = parsed.get<std::string>();
  return true;
}

ScanResult incomplete(std::string_view text) { return {ScanStatus::incomplete, text.size()}; }
ScanResult invalid(size_t at) { return {ScanStatus::invalid, at}; }

ScanResult scan_string(std::string_view text, size_t pos) {
  for (size_t i = pos + 1; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') return {ScanStatus::complete, i + 1};
    if (static_cast<unsigned char>(c) < 0x20) return invalid(i);
    if (c == '\\') {
      if (++i >= text.size()) return incomplete(text);
      char e = text[i];
      if (e == 'u') {
        for (int k = 0; k < 4; ++k) {
          if (++i >= text.size()) return incomplete(text);
          if (!std::isxdigit(static_cast<unsigned char>(text[i]))) return invalid(i);
        }
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return invalid(i);
      }
    }
  }
  return incomplete(text);
}

// A number ends where its characters end; one that reaches the end of the text may go on.
ScanResult scan_number(std::string_view text, size_t pos) {
  size_t i = pos;
  while (i < text.size() && std::string_view("+-0123456789.eE").find(text[i]) != std::string_view::npos) ++i;
  if (i == text.size()) return incomplete(text);
  // The slice must be a valid number on its own.
  nlohmann::json parsed = nlohmann::json::parse(text.substr(pos, i - pos), nullptr, false);
  if (parsed.is_discarded() || !parsed.is_number()) return invalid(pos);
  return {ScanStatus::complete, i};
}

ScanResult scan_literal(std::string_view text, size_t pos) {
  for (std::string_view word : {"true", "false", "null"}) {
    if (text[pos] != word[0]) continue;
    size_t n = std::min(word.size(), text.size() - pos);
    if (text.compare(pos, n, word, 0, n) != 0) return invalid(pos);
    return n < word.size() ? incomplete(text) : ScanResult{ScanStatus::complete, pos + word.size()};
  }
  return invalid(pos);
}

ScanResult scan_value(std::string_view text, size_t pos, int depth);

// Object or array: members separated by commas, space anywhere between tokens.
ScanResult scan_container(std::string_view text, size_t pos, int depth) {
  if (depth > kMaxDepth) return invalid(pos);
  const bool is_object = text[pos] == '{';
  const char close = is_object ? '}' : ']';
  size_t i = skip_json_space(text, pos + 1);
  if (i >= text.size()) return incomplete(text);
  if (text[i] == close) return {ScanStatus::complete, i + 1};
  while (true) {
    if (is_object) {
      if (text[i] != '"') return invalid(i);
      ScanResult key = scan_string(text, i);
      if (key.status != ScanStatus::complete) return key;
      i = skip_json_space(text, key.end);
      if (i >= text.size()) return incomplete(text);
      if (text[i] != ':') return invalid(i);
      i = skip_json_space(text, i + 1);
      if (i >= text.size()) return incomplete(text);
    }
    ScanResult value = scan_value(text, i, depth + 1);
    if (value.status != ScanStatus::complete) return value;
    i = skip_json_space(text, value.end);
    if (i >= text.size()) return incomplete(text);
    if (text[i] == close) return {ScanStatus::complete, i + 1};
    if (text[i] != ',') return invalid(i);
    i = skip_json_space(text, i + 1);
    if (i >= text.size()) return incomplete(text);
  }
}

ScanResult scan_value(std::string_view text, size_t pos, int depth) {
  if (pos >= text.size()) return incomplete(text);
  char c = text[pos];
  if (c == '{' || c == '[') return scan_container(text, pos, depth);
  if (c == '"') return scan_string(text, pos);
  if (c == '-' || (c >= '0' && c <= '9')) return scan_number(text, pos);
  return scan_literal(text, pos);
}

}  // namespace

size_t skip_json_space(std::string_view text, size_t pos) {
  while (pos < text.size() && is_space(text[pos])) ++pos;
  return pos;
}

ScanResult scan_json_value(std::string_view text, size_t pos) { return scan_value(text, pos, 0); }

bool is_json_object(std::string_view text) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
  return !parsed.is_discarded() && parsed.is_object();
}

CallObject scan_call_object(std::string_view text, size_t pos, std::string_view args_key_a,
                            std::string_view args_key_b) {
  CallObject call;
  auto stop = [&](ScanStatus status, size_t at) {
    call.status = status;
    call.end = at;
    return call;
  };
  if (pos >= text.size()) return stop(ScanStatus::incomplete, text.size());
  if (text[pos] != '{') return stop(ScanStatus::invalid, pos);
  size_t i = skip_json_space(text, pos + 1);
  bool first = true;
  while (true) {
    if (i >= text.size()) return stop(ScanStatus::incomplete, text.size());
    if (text[i] == '}' && first) return stop(ScanStatus::complete, i + 1);
    if (text[i] != '"') return stop(ScanStatus::invalid, i);
    ScanResult key = scan_string(text, i);
    if (key.status != ScanStatus::complete) return stop(key.status, key.end);
    std::string key_text;
    if (!decode_string(text.substr(i, key.end - i), key_text)) return stop(ScanStatus::invalid, i);
    i = skip_json_space(text, key.end);
    if (i >= text.size()) return stop(ScanStatus::incomplete, text.size());
    if (text[i] != ':') return stop(ScanStatus::invalid, i);
    i = skip_json_space(text, i + 1);
    if (i >= text.size()) return stop(ScanStatus::incomplete, text.size());
    const bool is_name = key_text == "name" && !call.has_name;
    const bool is_args = (key_text == args_key_a || key_text == args_key_b) && call.args_begin == std::string_view::npos;
    if (is_name && text[i] != '"') return stop(ScanStatus::invalid, i);
    if (is_args) {
      if (text[i] != '{') return stop(ScanStatus::invalid, i);
      call.args_begin = i;
    }
    ScanResult value = scan_json_value(text, i);
    if (value.status != ScanStatus::complete) return stop(value.status, value.end);
    if (is_name) {
      if (!decode_string(text.substr(i, value.end - i), call.name)) return stop(ScanStatus::invalid, i);
      call.has_name = true;
    }
    if (is_args) call.args_end = value.end;
    i = skip_json_space(text, value.end);
    if (i >= text.size()) return stop(ScanStatus::incomplete, text.size());
    if (text[i] == '}') return stop(ScanStatus::complete, i + 1);
    if (text[i] != ',') return stop(ScanStatus::invalid, i);
    i = skip_json_space(text, i + 1);
    first = false;
  }
}

size_t partial_marker_suffix(std::string_view text, std::string_view marker) {
  size_t max_len = std::min(marker.size() - 1, text.size());
  for (size_t len = max_len; len > 0; --len)
    if (text.compare(text.size() - len, len, marker, 0, len) == 0) return len;
  return 0;
}

bool ends_inside_marker(std::string_view text, size_t pos, std::string_view marker) {
  size_t n = text.size() - pos;
  return n < marker.size() && text.compare(pos, n, marker, 0, n) == 0;
}

}  // namespace troupe::http

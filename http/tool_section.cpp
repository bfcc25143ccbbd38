#include "http/tool_section.hpp"

namespace troupe::http {
namespace {

bool starts_with_at(std::string_view text, size_t pos, std::string_view marker) {
  return !marker.empty() && text.compare(pos, marker.size(), marker) == 0;
}

}  // namespace

ToolParse parse_marker_section(const MarkerFormat& format, std::string_view text, bool is_final) {
  ToolParse parse;
  const size_t begin = text.find(format.section_begin);
  if (begin == std::string_view::npos) {
    size_t hold = is_final ? 0 : partial_marker_suffix(text, format.section_begin);
    parse.content = std::string(text.substr(0, text.size() - hold));
    return parse;
  }
  parse.content = std::string(text.substr(0, begin));
  auto malformed = [&](size_t at) {
    parse.is_malformed = true;
    parse.malformed_at = at;
    return parse;
  };
  size_t pos = format.section_begin == format.call_begin ? begin : begin + format.section_begin.size();
  while (true) {
    const size_t at = skip_json_space(text, pos);
    if (at >= text.size()) {
      // A section with no call at all is malformed once the text ends.
      if (is_final && parse.calls.empty()) return malformed(begin);
      return parse;
    }
    if (starts_with_at(text, at, format.section_end)) {
      if (parse.calls.empty()) return malformed(begin);
      pos = at + format.section_end.size();
      break;
    }
    if (starts_with_at(text, at, format.call_begin)) {
      CallRead read = format.read_call(text, at + format.call_begin.size(), is_final);
      if (read.status == ScanStatus::invalid || (read.status == ScanStatus::incomplete && is_final))
        return malformed(parse.calls.empty() ? begin : at);
      parse.calls.push_back(std::move(read.call));
      if (read.status == ScanStatus::incomplete) return parse;
      parse.calls.back().is_complete = true;
      pos = read.end;
      continue;
    }
    if (!is_final && (ends_inside_marker(text, at, format.call_begin) ||
                      (!format.section_end.empty() && ends_inside_marker(text, at, format.section_end))))
      return parse;  // a marker may be arriving
    if (parse.calls.empty()) return malformed(begin);
    pos = at;  // text after the calls: content again
    break;
  }
  // Trailing text is content once it holds more than space (space alone is dropped).
  std::string_view rest = text.substr(pos);
  if (skip_json_space(rest, 0) < rest.size()) parse.content += std::string(rest);
  return parse;
}

CallRead read_arguments_until(std::string_view text, size_t pos, std::string_view end_marker, ParsedToolCall call) {
  CallRead read;
  const size_t end = text.find(end_marker, pos);
  if (end == std::string_view::npos) {
    size_t hold = partial_marker_suffix(text.substr(pos), end_marker);
    call.arguments = std::string(text.substr(pos, text.size() - pos - hold));
    // Arguments that cannot become an object fail early: they must open with '{'.
    size_t first = skip_json_space(call.arguments, 0);
    if (first < call.arguments.size() && call.arguments[first] != '{') return read;
    read.status = ScanStatus::incomplete;
    read.call = std::move(call);
    return read;
  }
  call.arguments = std::string(text.substr(pos, end - pos));
  if (!is_json_object(call.arguments)) return read;
  read.status = ScanStatus::complete;
  read.call = std::move(call);
  read.end = end + end_marker.size();
  return read;
}

}  // namespace troupe::http

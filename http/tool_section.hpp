#pragma once
// The shape the marker formats share (deepseek_v3, deepseek_v31, hermes): content, then a
// section of calls, each opened by a marker and separated by space, maybe closed by an end
// marker; text after the last call is content again. Each format reads the inside of one call.
#include <functional>
#include <string_view>

#include "http/json_scan.hpp"
#include "http/tool_parser.hpp"

namespace troupe::http {

struct CallRead {
  ScanStatus status = ScanStatus::invalid;
  ParsedToolCall call;  // as far as it goes when incomplete
  size_t end = 0;       // complete: one past the call's closing text
};

struct MarkerFormat {
  std::string_view section_begin;  // content is the text before its first occurrence
  std::string_view section_end;    // "" when the format has none
  std::string_view call_begin;     // may equal section_begin (hermes)
  // Reads one call from text[pos], just past call_begin.
  std::function<CallRead(std::string_view text, size_t pos, bool is_final)> read_call;
};

ToolParse parse_marker_section(const MarkerFormat& format, std::string_view text, bool is_final);

// Raw arguments between pos and the end marker: complete when the marker is there, else the text
// so far less a partial marker at its end. The arguments must be one JSON object once complete.
CallRead read_arguments_until(std::string_view text, size_t pos, std::string_view end_marker, ParsedToolCall call);

}  // namespace troupe::http

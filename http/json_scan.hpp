#pragma once
// A scanner for JSON text that may still be arriving (tool calls streamed token by token): it
// tells a complete value from an unfinished one and from one that can never be valid, and reads
// the members of a tool-call object ({"name": ..., "arguments" | "parameters": {...}}) as far as
// the text goes. It checks structure only; callers parse complete slices with nlohmann_json.
#include <cstddef>
#include <string>
#include <string_view>

namespace troupe::http {

enum class ScanStatus { complete, incomplete, invalid };

struct ScanResult {
  ScanStatus status = ScanStatus::invalid;
  size_t end = 0;  // complete: one past the value; incomplete: text.size()
};

size_t skip_json_space(std::string_view text, size_t pos);
// One JSON value starting at pos (no leading space skipped). Nesting past 64: invalid.
ScanResult scan_json_value(std::string_view text, size_t pos);
// True when text is exactly one JSON object (space around it allowed).
bool is_json_object(std::string_view text);

// A tool-call object read from text[pos] on.
struct CallObject {
  ScanStatus status = ScanStatus::invalid;
  size_t end = 0;            // complete: one past '}'
  bool has_name = false;     // "name" read whole (a string)
  std::string name;
  size_t args_begin = std::string_view::npos;  // raw text of the arguments object, when begun
  size_t args_end = std::string_view::npos;    // npos while it is unfinished
};

// args_keys: the member names that hold the arguments object, e.g. {"arguments", "parameters"}.
// A "name" that is not a string, or arguments that are not an object, make it invalid.
CallObject scan_call_object(std::string_view text, size_t pos, std::string_view args_key_a,
                            std::string_view args_key_b);

// Length of the longest suffix of text that is a proper prefix of marker (held back while streaming).
size_t partial_marker_suffix(std::string_view text, std::string_view marker);
// True when text[pos..] is a proper prefix of marker (text ends inside it).
bool ends_inside_marker(std::string_view text, size_t pos, std::string_view marker);

}  // namespace troupe::http

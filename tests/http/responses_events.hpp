#pragma once
// Parses a /v1/responses SSE body: each event is `event: <type>\ndata: <json>\n\n`; checks that
// the name matches the data's type. Comments (keep-alives) are skipped.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace troupe::testing {

inline std::vector<nlohmann::json> parse_response_events(const std::string& body) {
  std::vector<nlohmann::json> events;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string block = body.substr(at, end - at);
    at = end + 2;
    if (block.empty() || block[0] == ':') continue;
    const size_t newline = block.find('\n');
    if (block.rfind("event: ", 0) != 0 || newline == std::string::npos ||
        block.compare(newline + 1, 6, "data: ") != 0) {
      ADD_FAILURE() << "not an `event:` + `data:` block: " << block;
      continue;
    }
    const std::string name = block.substr(7, newline - 7);
    nlohmann::json data = nlohmann::json::parse(block.substr(newline + 7), nullptr, false);
    EXPECT_TRUE(data.is_object()) << block;
    if (!data.is_object()) continue;
    EXPECT_EQ(data.value("type", ""), name) << block;
    events.push_back(std::move(data));
  }
  return events;
}

}  // namespace troupe::testing

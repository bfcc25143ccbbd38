#pragma once
// API-key check: `Authorization: Bearer <key>` compared in constant time.
#include <string_view>

namespace troupe::http {

// Time depends only on the lengths, never on where the strings differ.
bool constant_time_equals(std::string_view a, std::string_view b);
// True when api_key is empty (auth off) or the header carries exactly "Bearer <api_key>".
bool is_authorized(std::string_view authorization_header, std::string_view api_key);

}  // namespace troupe::http

#pragma once
// API-key check: `Authorization: Bearer <key>` compared in constant time against each configured
// key. Config::api_key holds one key or several, comma-separated; any one authorizes.
#include <string>
#include <string_view>
#include <vector>

namespace troupe::http {

// Time depends only on the lengths, never on where the strings differ.
bool constant_time_equals(std::string_view a, std::string_view b);
// "k1,k2" -> {"k1", "k2"}; "" -> {} (auth off).
std::vector<std::string> split_api_keys(std::string_view api_keys);
// The token of "Bearer <token>" (scheme case as clients send it), or "" for any other header.
std::string_view bearer_token(std::string_view authorization_header);
// True when api_keys is empty (auth off) or the header carries "Bearer <one of api_keys>". Every
// key is compared, so the time does not say which one matched.
bool is_authorized(std::string_view authorization_header, std::string_view api_keys);

}  // namespace troupe::http

// ~2000 malformed bodies (random bytes, truncated JSON, wrong types, huge numbers, nested junk):
// each gets a 4xx OpenAI error, none reaches the engine, and the server still answers /health.
#include <random>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

const json kValidChat{{"model", "tiny"},
                      {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                      {"max_tokens", 4},
                      {"temperature", 0.7},
                      {"stop", {"x"}},
                      {"n", 1}};

// Values of the wrong type (or out of range) for each field of kValidChat.
json wrong_value(const std::string& field, std::mt19937& rng) {
  const std::vector<json> junk = {nullptr, true, -1, 1e308, -1e308, "str", json::array(), json::object(),
                                  json::array({1, "a", nullptr}), 18446744073709551615ull, -9223372036854775807ll};
  json v = junk[rng() % junk.size()];
  // Null is a legal "absent" for optional fields, and some junk happens to be legal for some
  // fields: replace those with a surely wrong value.
  bool legal = (v.is_null() && field != "model" && field != "messages") ||
               (field == "stop" && (v.is_string() || v == json::array())) ||
               (field == "temperature" && v.is_number() && v.get<double>() >= 0 && v.get<double>() <= 100) ||
               (field == "model" && v.is_string());
  return legal ? json::object() : v;
}

std::string nested_junk(std::mt19937& rng) {
  int depth = 1 + int(rng() % 300);
  std::string s;
  for (int i = 0; i < depth; ++i) s += (rng() % 2) ? "[" : "{\"k\":";
  if (rng() % 2) s += "1";
  return s;
}

std::string malformed_body(int i, std::mt19937& rng) {
  std::string valid = kValidChat.dump();
  switch (i % 6) {
    case 0: {  // random bytes
      std::string s(rng() % 200, '\0');
      for (char& c : s) c = char(rng() % 256);
      return s;
    }
    case 1:  // truncated JSON
      return valid.substr(0, rng() % (valid.size() - 1));
    case 2: {  // a field with a wrong type
      json body = kValidChat;
      const char* fields[] = {"model", "messages", "max_tokens", "temperature", "stop", "n"};
      std::string field = fields[rng() % 6];
      body[field] = wrong_value(field, rng);
      return body.dump();
    }
    case 3: {  // huge numbers, as text
      const char* fields[] = {"max_tokens", "temperature", "n", "top_k", "seed", "top_p"};
      std::string number = (rng() % 2 ? "1" : "-1") + std::string(1 + rng() % 400, '9') + (rng() % 2 ? "e999" : "");
      return R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],")" + std::string(fields[rng() % 6]) +
             "\":" + number + "}";
    }
    case 4:  // nested junk
      return nested_junk(rng);
    default: {  // junk messages
      json body = kValidChat;
      const std::vector<json> bad = {json::array(), json::array({1}), json::array({json::object()}),
                                     json::array({{{"role", 7}}}), json::array({{{"role", "x"}, {"content", "y"}}}),
                                     json::array({{{"role", "user"}, {"content", {{{"type", "image"}}}}}}),
                                     "text"};
      body["messages"] = bad[rng() % bad.size()];
      return body.dump();
    }
  }
}

TEST(HttpFuzz, MalformedBodiesGet4xxJsonErrors) {
  TestServer server;
  auto c = server.client();
  c.set_keep_alive(true);
  std::mt19937 rng(12345);
  const char* paths[] = {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"};
  int num_checked = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string body = malformed_body(i, rng);
    // Field-level junk is junk only for the generation routes; raw junk goes everywhere.
    bool raw = i % 6 == 0 || i % 6 == 1 || i % 6 == 4;
    std::string path = paths[raw ? rng() % 4 : rng() % 2];
    auto res = c.Post(path.c_str(), body, "application/json");
    ASSERT_TRUE(res) << "no answer to body #" << i << " on " << path;
    ASSERT_GE(res->status, 400) << path << " #" << i << ": " << body.substr(0, 200);
    ASSERT_LT(res->status, 500) << path << " #" << i << ": " << body.substr(0, 200) << " -> " << res->body;
    json reply = json::parse(res->body, nullptr, false);
    ASSERT_TRUE(reply.is_object() && reply.contains("error")) << res->body;
    ++num_checked;
  }
  EXPECT_EQ(num_checked, 2000);
  EXPECT_TRUE(server.engine().submitted().empty());
  EXPECT_EQ(c.Get("/health")->status, 200);
}

}  // namespace
}  // namespace troupe::testing

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "cluster/address.hpp"

namespace troupe::cluster {
namespace {

TEST(Address, ParsesHostPort) {
  auto a = parse_host_port("head.example:7400");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->host, "head.example");
  EXPECT_EQ(a->port, 7400);
  auto v6 = parse_host_port("[::1]:65535");
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 65535);
  EXPECT_EQ(v6->to_string(), "[::1]:65535");
  EXPECT_EQ(parse_host_port("10.0.0.1:1")->to_string(), "10.0.0.1:1");
}

TEST(Address, BadInputNamesTheTextAndTheProblem) {
  const char* cases[][2] = {
      {"nohostport", "expected HOST:PORT"}, {":7400", "empty host"},       {"h:", "port"},
      {"h:0", "port"},                      {"h:65536", "port"},           {"h:12x", "port"},
      {"h:-1", "port"},                     {"::1:7400", "brackets"},      {"[::1", "']'"},
      {"[::1]7400", "expected HOST:PORT"},  {"h:1234567", "port"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_host_port(c[0]);
    ASSERT_FALSE(parsed.ok()) << c[0];
    EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(parsed.error().message.find(c[0]), std::string::npos) << parsed.error().message;
    EXPECT_NE(parsed.error().message.find(c[1]), std::string::npos) << parsed.error().message;
  }
}

TEST(Address, TheLocalAddressTowardAPeerIsThatOfTheRoutingInterface) {
  auto loopback = local_address_toward(HostPort{"127.0.0.1", 7400});
  ASSERT_TRUE(loopback.ok()) << loopback.error().message;
  EXPECT_EQ(loopback.value(), "127.0.0.1");
  // 127.0.0.2 is on lo as well: the kernel picks a loopback source address toward it.
  auto other = local_address_toward(HostPort{"127.0.0.2", 7400});
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_EQ(other.value().rfind("127.", 0), 0u) << other.value();
}

TEST(Address, NoLocalAddressTowardAPeerThatDoesNotResolve) {
  auto none = local_address_toward(HostPort{"no-such-host.invalid", 7400});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::unavailable);
  EXPECT_NE(none.error().message.find("no-such-host.invalid"), std::string::npos) << none.error().message;
  EXPECT_NE(none.error().message.find("cannot resolve"), std::string::npos) << none.error().message;
}

TEST(Address, LwsDefaultsFromTheEnvironment) {
  std::map<std::string, std::string> vars;
  EnvLookup env = [&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  EXPECT_FALSE(lws_join_address(env, 7400).has_value());
  EXPECT_FALSE(lws_worker_index(env).has_value());
  vars["LWS_LEADER_ADDRESS"] = "lws-0.lws.default";
  vars["LWS_WORKER_INDEX"] = "3";
  EXPECT_EQ(lws_join_address(env, 7401).value_or(""), "lws-0.lws.default:7401");
  EXPECT_EQ(lws_worker_index(env).value_or(-1), 3);
  vars["LWS_WORKER_INDEX"] = "x1";
  EXPECT_FALSE(lws_worker_index(env).has_value());
  vars["LWS_LEADER_ADDRESS"] = "";
  EXPECT_FALSE(lws_join_address(env, 7400).has_value());
}

}  // namespace
}  // namespace troupe::cluster

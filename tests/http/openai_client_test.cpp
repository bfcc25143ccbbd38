// Runs tests/http/openai_client.test.mjs (the official `openai` npm client) against the test
// server with the FakeEngine. Skips unless node and .cache/npm/node_modules/openai are present
// (tools/openai-client-test installs them; it runs the same file against `troupe serve`).
#include <cstdlib>
#include <filesystem>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

TEST(HttpOpenAIClient, OfficialNodeClientPassesAgainstFakeEngine) {
  const std::string root = TROUPE_SOURCE_DIR;
  const std::string modules = root + "/.cache/npm/node_modules";
  ASSERT_EQ(std::system("command -v node >/dev/null 2>&1"), 0) << "node is not installed (tools/bootstrap installs it)";
  ASSERT_TRUE(std::filesystem::exists(modules + "/openai/package.json"))
      << "no openai npm package in " << modules << " (tools/test-setup installs it)";
  TestServer server;
  std::string command = "TROUPE_URL=http://127.0.0.1:" + std::to_string(server.port()) +
                        " TROUPE_MODEL=tiny TROUPE_NODE_MODULES=" + modules + " timeout 120 node --test " + root +
                        "/tests/http/openai_client.test.mjs > /tmp/troupe_openai_client_test.log 2>&1";
  int rc = std::system(command.c_str());
  if (rc != 0) std::system("cat /tmp/troupe_openai_client_test.log");
  EXPECT_EQ(rc, 0) << "node --test failed; see the log above";
}

}  // namespace
}  // namespace troupe::testing

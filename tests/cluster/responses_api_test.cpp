// The Responses API end to end: `troupe serve` of troupe-demo (a trained model that really adds)
// with the deepseek_r1 reasoning parser, and tests/cluster/responses_client.mjs driving it through
// the official `openai` npm client (responses.create whole and streamed, responses.stream, a
// token budget, 400s). The answer to "What is 4821 + 379?" must be 5200, with its reasoning item.
#include <cstdlib>
#include <filesystem>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

const std::string kRoot = TROUPE_SOURCE_DIR;

TEST(ResponsesApi, OpenaiClientAgainstTroupeServeOfTheDemoModel) {
  const std::string modules = kRoot + "/.cache/npm/node_modules";
  ASSERT_EQ(std::system("command -v node >/dev/null 2>&1"), 0) << "node is not installed (tools/bootstrap installs it)";
  ASSERT_TRUE(std::filesystem::exists(modules + "/openai/package.json")) << "run tools/test-setup";
  Cluster cluster("responses-serve");
  const int port = free_port();
  cluster.start("serve",
                {"serve", "--model", kRoot + "/tests/fixtures/models/troupe-demo", "--port", std::to_string(port),
                 "--num-threads", "1", "--reasoning-parser", "deepseek_r1", "--served-model-name", "troupe-demo"},
                "unused-token");
  ASSERT_TRUE(wait_healthy(port, milliseconds(120000))) << cluster.log("serve");
  const std::string report = ::testing::TempDir() + "/responses_client.txt";
  const std::string command = "TROUPE_URL=http://127.0.0.1:" + std::to_string(port) +
                              " TROUPE_MODEL=troupe-demo TROUPE_NODE_MODULES=" + modules + " timeout 120 node --test " +
                              kRoot + "/tests/cluster/responses_client.mjs > " + report + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << read_file(report) << cluster.log("serve");
}

}  // namespace
}  // namespace troupe::testing_cluster

// generation_config.json's sampling defaults (R1 ships temperature 0.6, top_p 0.95) apply to a
// request that leaves those fields out, as vLLM applies them; a field the request gives wins.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

namespace fs = std::filesystem;

class GenerationDefaults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("troupe_generation_defaults_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/models/qwen2-tiny/config.json", dir_ / "config.json");
    std::ofstream(dir_ / "generation_config.json")
        << R"({"bos_token_id": 0, "eos_token_id": 1, "do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20})";
  }
  void TearDown() override { fs::remove_all(dir_); }

  Config config() const {
    Config c = test_config();
    c.model = dir_.string();
    return c;
  }
  fs::path dir_;
};

json chat(const json& extra) {
  json body = {{"model", "tiny"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}, {"max_tokens", 2}};
  body.update(extra);
  return body;
}

TEST_F(GenerationDefaults, ApplyWhereTheRequestIsSilentAndYieldWhereItSpeaks) {
  TestServer server({}, config());
  auto c = server.client();
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat(json::object())).status, 200);
  ASSERT_EQ(post_json(c, "/v1/completions", json{{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 2},
                                                  {"temperature", 0.2}}).status, 200);
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat({{"top_p", 0.5}, {"top_k", -1}})).status, 200);
  const auto sent = server.engine().submitted();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_DOUBLE_EQ(sent[0].params.temperature, 0.6);
  EXPECT_DOUBLE_EQ(sent[0].params.top_p, 0.95);
  EXPECT_EQ(sent[0].params.top_k, 20);
  EXPECT_DOUBLE_EQ(sent[1].params.temperature, 0.2);  // given
  EXPECT_DOUBLE_EQ(sent[1].params.top_p, 0.95);        // default
  EXPECT_DOUBLE_EQ(sent[2].params.temperature, 0.6);
  EXPECT_DOUBLE_EQ(sent[2].params.top_p, 0.5);
  EXPECT_EQ(sent[2].params.top_k, -1);
}

TEST_F(GenerationDefaults, AModelWithoutThemKeepsOpenAIsDefaults) {
  TestServer server;  // fake/tiny: no folder
  auto c = server.client();
  ASSERT_EQ(post_json(c, "/v1/chat/completions", chat(json::object())).status, 200);
  const auto sent = server.engine().submitted();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_DOUBLE_EQ(sent[0].params.temperature, SamplingParams{}.temperature);
  EXPECT_DOUBLE_EQ(sent[0].params.top_p, 1.0);
  EXPECT_EQ(sent[0].params.top_k, SamplingParams{}.top_k);
}

}  // namespace
}  // namespace troupe::testing

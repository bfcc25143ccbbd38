// DeepSeek-R1 chat end to end, real processes on loopback: the R1 serving fixture (real DeepSeek-V3
// tokenizer, R1 chat template, random DeepSeek-V3 weights; tools/make_deepseek_r1_fixture.py)
// through `troupe serve`, through a head whose group is two worker processes (PP=2 over UCX), and
// through two workers of two tensor-parallel ranks each (PP=2 x TP=2), all with the deepseek_r1
// reasoning parser. Every chat of the fixture's transformers oracle must
// come back as its greedy completion: the template opens <think>, so the whole text is
// reasoning_content, streamed or not.
#include <httplib.h>

#include <filesystem>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kToken = "deepseek-test-token";
const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-r1-tiny";
const std::vector<std::string> kEngineFlags = {"--num-threads",  "1", "--num-kv-blocks", "256", "--max-num-seqs", "8",
                                               "--reasoning-parser", "deepseek_r1"};
constexpr int kMaxTokens = 24;  // the oracle's completions are at most this long

std::vector<std::string> with_engine_flags(std::vector<std::string> args) {
  for (const auto& flag : kEngineFlags) args.push_back(flag);
  return args;
}

json chat_oracle() { return json::parse(read_file(kModel + "/chat_oracle.json")); }

json chat_body(const json& chat, bool stream) {
  return json{{"model", "deepseek-r1-tiny"}, {"messages", chat["messages"]}, {"max_tokens", kMaxTokens},
              {"temperature", 0},            {"stream", stream}};
}

std::string expected_finish(const json& chat) {
  const auto ids = chat["completion_ids"].get<std::vector<int>>();
  return !ids.empty() && ids.back() == 1 ? "stop" : "length";
}

// Every oracle chat, whole and streamed, against the server on `port`.
void expect_oracle_chats(int port, const std::string& where) {
  SCOPED_TRACE(where);
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  for (const auto& chat : chat_oracle()) {
    const std::string want = chat["completion_text"];
    auto res = client.Post("/v1/chat/completions", chat_body(chat, false).dump(), "application/json");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    ASSERT_EQ(res->status, 200) << res->body;
    const json body = json::parse(res->body);
    const json& message = body["choices"][0]["message"];
    EXPECT_EQ(message.value("reasoning_content", ""), want) << res->body;
    EXPECT_TRUE(message["content"].is_null() || message["content"] == "") << res->body;
    EXPECT_EQ(body["choices"][0]["finish_reason"], expected_finish(chat));
    EXPECT_EQ(body["usage"]["prompt_tokens"], chat["prompt_ids"].size());
    EXPECT_EQ(body["usage"]["completion_tokens"], chat["completion_ids"].size());

    std::string reasoning, content, finish, pending;
    bool done = false;
    httplib::Request request;
    request.method = "POST";
    request.path = "/v1/chat/completions";
    request.headers = {{"Content-Type", "application/json"}};
    request.body = chat_body(chat, true).dump();
    request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      pending.append(data, size);
      size_t end;
      while ((end = pending.find("\n\n")) != std::string::npos) {
        const std::string event = pending.substr(0, end);
        pending.erase(0, end + 2);
        if (event == "data: [DONE]") done = true;
        if (event.rfind("data: {", 0) != 0) continue;
        const json chunk = json::parse(event.substr(6));
        const json& delta = chunk["choices"][0]["delta"];
        if (delta.contains("reasoning_content")) reasoning += delta["reasoning_content"].get<std::string>();
        if (delta.contains("content") && delta["content"].is_string()) content += delta["content"].get<std::string>();
        if (chunk["choices"][0]["finish_reason"].is_string()) finish = chunk["choices"][0]["finish_reason"];
      }
      return true;
    };
    auto streamed = client.send(request);
    ASSERT_TRUE(streamed) << httplib::to_string(streamed.error());
    EXPECT_EQ(streamed->status, 200);
    EXPECT_EQ(reasoning, want);
    EXPECT_EQ(content, "");
    EXPECT_EQ(finish, expected_finish(chat));
    EXPECT_TRUE(done) << "no [DONE]";
  }
}

TEST(DeepseekServing, R1ChatsMatchTransformersThroughServeAndATwoStagePipeline) {
  ASSERT_TRUE(std::filesystem::exists(kModel + "/tokenizer.json"))
      << kModel << "/tokenizer.json does not resolve: run tools/fetch-tokenizers";
  Cluster cluster("deepseek-pp2");
  const int serve_port = free_port();
  const pid_t serve = cluster.start(
      "serve", with_engine_flags({"serve", "--model", kModel, "--port", std::to_string(serve_port)}), kToken);
  ASSERT_TRUE(wait_healthy(serve_port, milliseconds(30000))) << cluster.log("serve");
  expect_oracle_chats(serve_port, "troupe serve");
  ::kill(serve, SIGTERM);
  Cluster::wait_exit(serve, milliseconds(10000));

  const int http = free_port();
  cluster.start_serving_head(kModel, 2, 1, http, kToken, kEngineFlags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1"});
  ASSERT_TRUE(wait_healthy(http, milliseconds(30000))) << cluster.log("head") << cluster.log("worker_a");
  EXPECT_NE(cluster.log("worker_a").find("loaded layers"), std::string::npos) << cluster.log("worker_a");
  expect_oracle_chats(http, "head + 2 workers, PP=2");
}

TEST(DeepseekServing, R1ChatsMatchTransformersThroughTwoStagesOfTwoTensorParallelRanks) {
  ASSERT_TRUE(std::filesystem::exists(kModel + "/tokenizer.json"))
      << kModel << "/tokenizer.json does not resolve: run tools/fetch-tokenizers";
  Cluster cluster("deepseek-pp2tp2");
  const int http = free_port();
  cluster.start_serving_head(kModel, 2, 1, http, kToken, with_engine_flags({"--tensor-parallel-size", "2"}));
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "2"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "2"});
  ASSERT_TRUE(wait_healthy(http, milliseconds(30000))) << cluster.log("head") << cluster.log("worker_a");
  EXPECT_NE(cluster.log("worker_a").find("tensor parallel: 2 ranks"), std::string::npos) << cluster.log("worker_a");
  expect_oracle_chats(http, "head + 2 workers, PP=2 x TP=2 (MLA heads and experts split)");
}

// The FP8 block checkpoint (partial 128-blocks, an MTP layer to skip) split over two worker
// processes: greedy completions of the oracle's prompts equal `troupe serve`'s (which equal
// transformers', tests/unit).
TEST(DeepseekServing, AnFp8CheckpointInTwoStagesMatchesTheSingleProcessEngine) {
  const std::string model = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-fp8-tiny";
  const json oracle = json::parse(read_file(model + "/oracle.json"));
  auto complete = [&](int port, const json& prompt) {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(120, 0);
    const json body = {{"model", "deepseek-v3-fp8-tiny"}, {"prompt", prompt}, {"max_tokens", 16},
                       {"temperature", 0}, {"ignore_eos", true}};
    auto res = client.Post("/v1/completions", body.dump(), "application/json");
    if (!res || res->status != 200) return std::string("<failed>");
    return json::parse(res->body)["choices"][0]["text"].get<std::string>();
  };
  Cluster cluster("deepseek-fp8-pp2");
  const std::vector<std::string> flags = {"--num-threads", "1", "--num-kv-blocks", "256", "--max-num-seqs", "8"};
  std::vector<std::string> serve_args = {"serve", "--model", model, "--port", std::to_string(free_port())};
  const int serve_port = std::stoi(serve_args.back());
  for (const auto& f : flags) serve_args.push_back(f);
  const pid_t serve = cluster.start("serve", serve_args, kToken);
  ASSERT_TRUE(wait_healthy(serve_port, milliseconds(30000))) << cluster.log("serve");
  std::vector<std::string> want;
  for (const auto& prompt : oracle["prompts"]) want.push_back(complete(serve_port, prompt));
  ::kill(serve, SIGTERM);
  Cluster::wait_exit(serve, milliseconds(10000));

  const int http = free_port();
  cluster.start_serving_head(model, 2, 1, http, kToken, flags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1"});
  ASSERT_TRUE(wait_healthy(http, milliseconds(30000))) << cluster.log("head") << cluster.log("worker_a");
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NE(want[i], "<failed>");
    EXPECT_EQ(complete(http, oracle["prompts"][i]), want[i]) << "prompt " << i;
  }
}

}  // namespace
}  // namespace troupe::testing_cluster

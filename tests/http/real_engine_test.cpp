// The HTTP server over the real engine (CPU backend) and the fixture model's real tokenizer:
// 64 concurrent greedy streams give exactly what each gives alone, and clients that hang up
// mid-stream, or before a non-streaming answer, leave no KV blocks behind (as /metrics shows);
// prompt_logprobs as vLLM shapes them, checked against transformers' logits and teacher forcing.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/hf_text_codec.hpp"
#include "http/server.hpp"
#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

class RealEngineServer {
 public:
  explicit RealEngineServer(bool async_scheduling = false) {
    config_.async_scheduling = async_scheduling;
    config_.model = kModel;
    config_.served_model_name = "tiny";
    config_.http_port = 0;
    config_.num_threads = 2;
    config_.num_kv_blocks = 512;
    config_.max_num_seqs = 64;
    auto engine = backends::build_engine(config_);
    EXPECT_TRUE(engine.ok()) << engine.error().message;
    engine_ = std::move(engine.value());
    engine_->start();
    config_.max_model_len = engine_->max_model_len();
    auto codec = http::HfTextCodec::load(kModel);
    EXPECT_TRUE(codec.ok()) << codec.error().message;
    server_ = std::make_unique<http::Server>(config_, engine_.get(), codec.value());
    EXPECT_TRUE(server_->bind().ok());
    thread_ = std::thread([this] { server_->listen(); });
    client().Get("/health");
  }
  ~RealEngineServer() {
    server_->stop();
    thread_.join();
    engine_->stop();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    c.set_tcp_nodelay(true);
    return c;
  }
  LlmEngine& engine() { return *engine_; }

 private:
  Config config_;
  std::unique_ptr<LlmEngine> engine_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

json chat_body(int i, bool stream) {
  return json{{"model", "tiny"},
              {"messages", json::array({json{{"role", "user"}, {"content", "Question number " + std::to_string(i)}}})},
              {"max_tokens", 12},
              {"temperature", 0},
              {"ignore_eos", true},
              {"stream", stream}};
}

// The streamed text of one chat completion.
std::string stream_text(httplib::Client& c, const json& body) {
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  if (!res || res->status != 200) return "<failed>";
  std::string text;
  for (const json& event : sse_events(res->body)) {
    if (!event.contains("choices") || event["choices"].empty()) continue;
    const json& delta = event["choices"][0]["delta"];
    if (delta.contains("content") && delta["content"].is_string()) text += delta["content"].get<std::string>();
  }
  return text;
}

double metric(httplib::Client& c, const std::string& name) {
  auto res = c.Get("/metrics");
  if (!res) return -1;
  const std::string& body = res->body;
  size_t at = body.find("\n" + name);
  if (at == std::string::npos) return -1;
  size_t end = body.find('\n', at + 1);
  std::string line = body.substr(at + 1, end - at - 1);
  return std::stod(line.substr(line.rfind(' ') + 1));
}

// After clients left: within 30 s nothing runs and no KV block is held.
void expect_all_requests_gone(RealEngineServer& server) {
  auto c = server.client();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  double usage = -1, running = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    usage = metric(c, "troupe:kv_cache_usage_perc");
    running = metric(c, "troupe:num_requests_running");
    if (usage == 0 && running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(usage, 0.0);
  EXPECT_EQ(running, 0.0);
  EXPECT_EQ(server.engine().stats().num_kv_blocks_used, 0);
}

TEST(HttpRealEngine, SixtyFourConcurrentStreamsMatchEachAlone) {
  RealEngineServer server;
  constexpr int kStreams = 64;
  std::vector<std::string> alone(kStreams), together(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    auto c = server.client();
    alone[size_t(i)] = stream_text(c, chat_body(i, true));
  }
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      auto c = server.client();
      together[size_t(i)] = stream_text(c, chat_body(i, true));
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_NE(alone[size_t(i)], "<failed>");
    EXPECT_EQ(together[size_t(i)], alone[size_t(i)]) << "stream " << i;
  }
  // The non-streaming answer is the same text too.
  auto c = server.client();
  JsonReply plain = post_json(c, "/v1/chat/completions", chat_body(3, false));
  ASSERT_EQ(plain.status, 200) << plain.raw;
  EXPECT_EQ(plain.body["choices"][0]["message"]["content"].get<std::string>(), alone[3]);
}

// Overlapped scheduling: a stop string found in step N's text cancels a request whose step N+1 is
// already running; the text (streamed and whole) and the finish reason are those without overlap,
// and no KV block is left behind. Each stop string is taken from the middle of a greedy answer.
TEST(HttpRealEngine, StopStringsGiveTheSameTextWithOverlap) {
  constexpr int kRequests = 12;
  std::vector<json> bodies;
  std::vector<std::string> streamed(kRequests), whole(kRequests), finish(kRequests);
  {
    RealEngineServer server(false);
    for (int i = 0; i < kRequests; ++i) {
      auto c = server.client();
      json body = chat_body(i, true);
      body["max_tokens"] = 24;
      const std::string text = stream_text(c, body);
      ASSERT_GE(text.size(), 8u) << text;
      size_t at = text.size() / 2;  // two ASCII bytes (a whole UTF-8 string) from the middle on
      while (at + 2 < text.size() && (uint8_t(text[at]) >= 0x80 || uint8_t(text[at + 1]) >= 0x80)) ++at;
      ASSERT_LT(at + 2, text.size()) << "no ASCII pair in the second half of: " << text;
      body["stop"] = json::array({text.substr(at, 2)});
      bodies.push_back(body);
      streamed[size_t(i)] = stream_text(c, body);
      body["stream"] = false;
      JsonReply plain = post_json(c, "/v1/chat/completions", body);
      ASSERT_EQ(plain.status, 200) << plain.raw;
      whole[size_t(i)] = plain.body["choices"][0]["message"]["content"].get<std::string>();
      finish[size_t(i)] = plain.body["choices"][0]["finish_reason"].get<std::string>();
      EXPECT_EQ(finish[size_t(i)], "stop") << i;
      EXPECT_LT(whole[size_t(i)].size(), text.size()) << i;
    }
  }
  RealEngineServer server(true);
  ASSERT_TRUE(server.engine().is_overlapping());
  std::vector<std::thread> clients;
  std::vector<std::string> got_streamed(kRequests), got_whole(kRequests), got_finish(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&, i] {
      auto c = server.client();
      json body = bodies[size_t(i)];
      got_streamed[size_t(i)] = stream_text(c, body);
      body["stream"] = false;
      JsonReply plain = post_json(c, "/v1/chat/completions", body);
      if (plain.status != 200) return;
      got_whole[size_t(i)] = plain.body["choices"][0]["message"]["content"].get<std::string>();
      got_finish[size_t(i)] = plain.body["choices"][0]["finish_reason"].get<std::string>();
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(got_streamed[size_t(i)], streamed[size_t(i)]) << i;
    EXPECT_EQ(got_whole[size_t(i)], whole[size_t(i)]) << i;
    EXPECT_EQ(got_finish[size_t(i)], finish[size_t(i)]) << i;
  }
  EXPECT_GT(server.engine().num_overlapped_steps(), 0);
  expect_all_requests_gone(server);
}

TEST(HttpRealEngine, ClientsHangingUpMidStreamLeakNoKvBlocks) {
  RealEngineServer server;
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      auto c = server.client();
      json body = chat_body(i, true);
      body["max_tokens"] = 480;
      std::atomic<int> chunks{0};
      // Returning false from the receiver closes the connection after a few chunks.
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/chat/completions";
      req.body = body.dump();
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
      httplib::Response res;
      httplib::Error err;
      c.send(req, res, err);
    });
  }
  for (auto& t : clients) t.join();
  expect_all_requests_gone(server);
  // They were cut short, not run to their 480 tokens.
  EXPECT_LT(server.engine().stats().num_generation_tokens_total, 8 * 480 / 2);
}

TEST(HttpRealEngine, NonStreamingClientsHangingUpLeakNoKvBlocks) {
  RealEngineServer server;
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      auto c = server.client();
      c.set_read_timeout(0, 100 * 1000);  // gives up after 0.1 s and closes the connection
      json body = chat_body(i, false);
      body["max_tokens"] = 480;
      c.Post("/v1/chat/completions", body.dump(), "application/json");
    });
  }
  for (auto& t : clients) t.join();
  expect_all_requests_gone(server);
  // Not all ran to their 480 tokens. (How far they got before the hang-up was seen depends on the
  // machine's speed: an idle one reaches about half in 0.1 s, so half is no bound here.)
  EXPECT_LT(server.engine().stats().num_generation_tokens_total, 8 * 480);
}

// vLLM's shape: one entry per prompt token, the first null, each other a map from token id to
// {logprob, rank, decoded_token} holding the prompt's token and the top k; values from
// transformers' logits of the same positions (oracle_logits.safetensors).
TEST(HttpRealEngine, PromptLogprobsOnCompletionsMatchTransformers) {
  RealEngineServer server;
  auto oracle = nlohmann::json::parse(std::ifstream(kModel + "/oracle.json"));
  const std::vector<int32_t> prompt = oracle["prompts"][2].get<std::vector<int32_t>>();
  auto file = SafetensorsFile::open(kModel + "/oracle_logits.safetensors");
  ASSERT_TRUE(file.ok()) << file.error().message;
  const TensorView* logits = file.value()->find("logits.2");
  ASSERT_NE(logits, nullptr);
  const int64_t vocab = logits->shape[1];
  auto c = server.client();
  JsonReply reply = post_json(c, "/v1/completions",
                              json{{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0},
                                   {"prompt_logprobs", 2}});
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& entries = reply.body["choices"][0]["prompt_logprobs"];
  ASSERT_TRUE(entries.is_array()) << reply.raw;
  ASSERT_EQ(entries.size(), prompt.size());
  EXPECT_TRUE(entries[0].is_null());
  for (size_t j = 1; j < prompt.size(); ++j) {
    SCOPED_TRACE("position " + std::to_string(j));
    const json& entry = entries[j];
    ASSERT_TRUE(entry.is_object());
    EXPECT_GE(entry.size(), 2u);  // the top 2, and the prompt's token when it is not among them
    EXPECT_LE(entry.size(), 3u);
    const float* row = static_cast<const float*>(logits->data) + int64_t(j - 1) * vocab;
    const double max_value = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - max_value);
    const std::string key = std::to_string(prompt[j]);
    ASSERT_TRUE(entry.contains(key)) << entry.dump();
    EXPECT_NEAR(entry[key]["logprob"].get<double>(), double(row[prompt[j]]) - max_value - std::log(sum), 3e-3);
    EXPECT_GE(entry[key]["rank"].get<int64_t>(), 1);
    EXPECT_TRUE(entry[key]["decoded_token"].is_string());
    int num_top = 0;
    for (const auto& [id, value] : entry.items()) num_top += value["rank"].get<int64_t>() <= 2 ? 1 : 0;
    EXPECT_GE(num_top, 2);
  }
}

// Teacher forcing: the logprob the sampler gave a generated token is the prompt logprob of the
// same token once it is appended to the prompt; chat puts prompt_logprobs at the top level;
// streaming is refused as vLLM refuses it.
TEST(HttpRealEngine, PromptLogprobsAgreeWithTeacherForcingAndChat) {
  RealEngineServer server;
  auto c = server.client();
  auto oracle = nlohmann::json::parse(std::ifstream(kModel + "/oracle.json"));
  const std::vector<int32_t> prompt = oracle["prompts"][1].get<std::vector<int32_t>>();
  const int32_t next = oracle["greedy"][1][0].get<int32_t>();  // transformers' greedy choice
  JsonReply sampled = post_json(c, "/v1/completions",
                                json{{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 1}, {"temperature", 0},
                                     {"logprobs", 0}});
  ASSERT_EQ(sampled.status, 200) << sampled.raw;
  std::vector<int32_t> forced = prompt;
  forced.push_back(next);
  JsonReply scored = post_json(c, "/v1/completions",
                               json{{"model", "tiny"}, {"prompt", forced}, {"max_tokens", 1}, {"temperature", 0},
                                    {"prompt_logprobs", 0}});
  ASSERT_EQ(scored.status, 200) << scored.raw;
  const json& last = scored.body["choices"][0]["prompt_logprobs"].back();
  ASSERT_EQ(last.size(), 1u) << last.dump();  // k = 0: the prompt's token alone
  const json& entry = last[std::to_string(next)];
  EXPECT_NEAR(entry["logprob"].get<double>(),
              sampled.body["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(), 1e-4);
  EXPECT_EQ(entry["rank"], 1);  // it was the greedy choice
  EXPECT_EQ(entry["decoded_token"], sampled.body["choices"][0]["text"]);

  json chat = chat_body(0, false);
  chat["prompt_logprobs"] = 1;
  JsonReply reply = post_json(c, "/v1/chat/completions", chat);
  ASSERT_EQ(reply.status, 200) << reply.raw;
  const json& entries = reply.body["prompt_logprobs"];
  ASSERT_TRUE(entries.is_array()) << reply.raw;
  EXPECT_EQ(int64_t(entries.size()), reply.body["usage"]["prompt_tokens"].get<int64_t>());
  EXPECT_TRUE(entries[0].is_null());
  for (size_t j = 1; j < entries.size(); ++j) {
    EXPECT_GE(entries[j].size(), 1u);
    EXPECT_LE(entries[j].size(), 2u);
  }
  chat["stream"] = true;
  JsonReply streamed = post_json(c, "/v1/chat/completions", chat);
  EXPECT_EQ(streamed.status, 400) << streamed.raw;
  EXPECT_EQ(streamed.body["error"]["param"], "prompt_logprobs");
}

}  // namespace
}  // namespace troupe::testing

// troupe-demo (tools/train_demo_model.py: a tiny DeepSeek-V3 trained on exact synthetic tasks) as
// the judge of every serving path: the 200 problems of tests/fixtures/demo/problems.json (drawn
// with another seed than training), greedy, through
//   - `troupe generate --messages-jsonl` on the CPU, bf16 and FP8 checkpoints,
//   - `troupe serve` over HTTP with the official `openai` npm client, whole and streamed,
//   - a head with two workers (PP=2), and `troupe serve --tp 2` (two CPU ranks),
//   - two replicas of PP=2 with `kill -9` of a worker while every stream runs.
// The CPU engine computes in fp32, so its texts must equal transformers' fp32 greedy completions
// (recorded beside the problems); every other path must be within one point of its accuracy, as
// the FP8 checkpoint must be of transformers' figure on the dequantized weights.
#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kRoot = TROUPE_SOURCE_DIR;
const std::string kBf16 = kRoot + "/tests/fixtures/models/troupe-demo";
const std::string kFp8 = kRoot + "/tests/fixtures/models/troupe-demo-fp8";
const std::string kProblems = kRoot + "/tests/fixtures/demo/problems.json";
const std::string kToken = "demo-test-token";
constexpr double kOnePoint = 0.01;
const std::vector<std::string> kEngineFlags = {"--num-threads", "1", "--max-num-seqs", "64", "--reasoning-parser",
                                               "deepseek_r1", "--served-model-name", "troupe-demo"};

json problems() { return json::parse(read_file(kProblems))["problems"]; }

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \n");
  const size_t last = s.find_last_not_of(" \n");
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

// The answer of an R1 completion: the text after </think>, trimmed.
std::string answer_of(const std::string& text) {
  const size_t end = text.rfind("</think>");
  return end == std::string::npos ? "" : trim(text.substr(end + 8));
}

// transformers' accuracy of a recorded completion field ("transformers_fp32", "..._fp8").
double transformers_accuracy(const json& ps, const std::string& field) {
  int correct = 0;
  for (const auto& p : ps) correct += answer_of(p[field].get<std::string>()) == p["answer"];
  return double(correct) / double(ps.size());
}

struct GenerateRun {
  double accuracy = 0;
  int equal_to_oracle = 0;
  double tokens_per_second = 0;
  std::vector<std::string> texts;
};

GenerateRun generate_all(const std::string& model, const json& ps, const std::string& oracle_field) {
  // Per process and model: ctest runs each test of this suite in its own process, side by side.
  const std::string dir = ::testing::TempDir() + "/troupe_demo_" + std::to_string(::getpid()) + "_" +
                          std::filesystem::path(model).filename().string();
  std::filesystem::create_directories(dir);
  const std::string input = dir + "/demo_problems.jsonl";
  {
    std::ofstream file(input);
    for (const auto& p : ps) file << json{{"messages", p["messages"]}}.dump() << "\n";
  }
  const std::string output = dir + "/demo_answers.jsonl";
  const std::string command = std::string(TROUPE_BINARY) + " generate --model " + model + " --messages-jsonl " + input +
                              " --temperature 0 --max-tokens 400 --num-threads 2 --log-level warn > " + output +
                              " 2>" + output + ".err";
  GenerateRun run;
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << read_file(output + ".err");
  std::ifstream lines(output);
  std::string line;
  int correct = 0;
  size_t i = 0;
  while (std::getline(lines, line)) {
    const json item = json::parse(line);
    if (item.contains("summary")) {
      run.tokens_per_second = item["summary"]["tokens_per_second"];
      continue;
    }
    if (i >= ps.size()) break;
    const std::string text = item["text"];
    run.texts.push_back(text);
    correct += answer_of(text) == ps[i]["answer"];
    run.equal_to_oracle += text == ps[i][oracle_field];
    ++i;
  }
  EXPECT_EQ(i, ps.size()) << "answers missing";
  run.accuracy = double(correct) / double(ps.size());
  return run;
}

struct HttpRun {
  double accuracy = 0;
  int failed = 0;           // not 200, or an error event, or no [DONE]
  int with_reasoning = 0;   // reasoning_content not empty
};

// One streamed chat completion; content and reasoning_content accumulated.
struct Streamed {
  int status = 0;
  bool done = false;
  std::string content, reasoning, error;
};

Streamed stream_chat(int port, const json& p, const std::function<void()>& on_first_chunk) {
  Streamed out;
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(300, 0);
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = json{{"model", "troupe-demo"}, {"messages", p["messages"]}, {"max_tokens", 400},
                      {"temperature", 0},       {"stream", true}}
                     .dump();
  std::string pending;
  bool first = true;
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    pending.append(data, size);
    size_t end;
    while ((end = pending.find("\n\n")) != std::string::npos) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      if (event == "data: [DONE]") out.done = true;
      if (event.rfind("data: {", 0) != 0) continue;
      const json chunk = json::parse(event.substr(6), nullptr, false);
      if (chunk.contains("error")) out.error = chunk["error"].dump();
      if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
      const json& delta = chunk["choices"][0]["delta"];
      if (delta.contains("reasoning_content") && delta["reasoning_content"].is_string())
        out.reasoning += delta["reasoning_content"].get<std::string>();
      if (delta.contains("content") && delta["content"].is_string()) out.content += delta["content"].get<std::string>();
      if (first && on_first_chunk) {
        first = false;
        on_first_chunk();
      }
    }
    return true;
  };
  auto res = client.send(request);
  out.status = res ? res->status : -1;
  return out;
}

// Every problem streamed, `lanes` at a time; `during` runs once `lanes` streams have begun.
HttpRun stream_all(int port, const json& ps, int lanes, const std::function<void()>& during = {}) {
  std::atomic<size_t> next{0}, begun{0};
  std::atomic<int> correct{0}, failed{0}, with_reasoning{0};
  std::vector<std::thread> threads;
  for (int lane = 0; lane < lanes; ++lane)
    threads.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < ps.size();) {
        const Streamed s = stream_chat(port, ps[i], [&] { begun.fetch_add(1); });
        if (s.status != 200 || !s.done || !s.error.empty()) failed.fetch_add(1);
        correct += trim(s.content) == ps[i]["answer"];
        with_reasoning += !trim(s.reasoning).empty();
      }
    });
  if (during && wait_until([&] { return begun.load() >= size_t(lanes); }, milliseconds(120000))) during();
  for (auto& t : threads) t.join();
  HttpRun run;
  run.accuracy = double(correct.load()) / double(ps.size());
  run.failed = failed.load();
  run.with_reasoning = with_reasoning.load();
  return run;
}

// ctest runs every test below in its own process. The CPU `troupe generate` run is the first
// test; it proves that run's texts equal transformers' fp32 greedy texts (all but a near-tie or
// two), so the other paths compare with transformers' recorded figure, the CPU figure, without
// generating it again.
class DemoAccuracy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(std::filesystem::exists(kProblems)) << kProblems;
    ps_ = problems();
    cpu_figure_ = transformers_accuracy(ps_, "transformers_fp32");
  }
  static json ps_;
  static double cpu_figure_;
};
json DemoAccuracy::ps_;
double DemoAccuracy::cpu_figure_ = 0;

TEST_F(DemoAccuracy, GenerateOnTheCpuEqualsTransformers) {
  const GenerateRun cpu = generate_all(kBf16, ps_, "transformers_fp32");
  const double oracle = cpu_figure_;
  std::printf("[ demo ] troupe generate, CPU, bf16 checkpoint: %.3f exact (transformers fp32: %.3f), %d/%zu texts "
              "equal to transformers', %.0f tokens/s\n",
              cpu.accuracy, oracle, cpu.equal_to_oracle, ps_.size(), cpu.tokens_per_second);
  // fp32 on both sides: the same greedy text, but for a rare near-tie.
  EXPECT_GE(cpu.equal_to_oracle, int(ps_.size()) - 2);
  EXPECT_NEAR(cpu.accuracy, oracle, kOnePoint);
  EXPECT_GE(cpu.accuracy, 0.98) << "troupe-demo answers at least 98% of the problems exactly";
}

TEST_F(DemoAccuracy, GenerateOnTheCpuWithTheFp8Checkpoint) {
  const GenerateRun fp8 = generate_all(kFp8, ps_, "transformers_fp8");
  const double oracle = transformers_accuracy(ps_, "transformers_fp8");
  std::printf("[ demo ] troupe generate, CPU, FP8 checkpoint: %.3f exact (transformers on the dequantized weights: "
              "%.3f), %d/%zu texts equal\n",
              fp8.accuracy, oracle, fp8.equal_to_oracle, ps_.size());
  EXPECT_NEAR(fp8.accuracy, oracle, kOnePoint);
  EXPECT_GE(fp8.equal_to_oracle, int(ps_.size()) - 2);
  EXPECT_GE(fp8.accuracy, cpu_figure_ - 2 * kOnePoint) << "FP8 blocks cost more than two points";
}

TEST_F(DemoAccuracy, ServeWithTheOpenaiClientWholeAndStreamed) {
  const std::string modules = kRoot + "/.cache/npm/node_modules";
  ASSERT_EQ(std::system("command -v node >/dev/null 2>&1"), 0) << "node is not installed (tools/bootstrap installs it)";
  ASSERT_TRUE(std::filesystem::exists(modules + "/openai/package.json")) << "run tools/test-setup";
  Cluster cluster("demo-serve");
  const int port = free_port();
  std::vector<std::string> args = {"serve", "--model", kBf16, "--port", std::to_string(port)};
  for (const auto& flag : kEngineFlags) args.push_back(flag);
  cluster.start("serve", args, kToken);
  ASSERT_TRUE(wait_healthy(port, milliseconds(120000))) << cluster.log("serve");
  const std::string report_path = ::testing::TempDir() + "/demo_openai_client.json";
  const std::string command = "TROUPE_URL=http://127.0.0.1:" + std::to_string(port) +
                              " TROUPE_MODEL=troupe-demo TROUPE_PROBLEMS=" + kProblems + " TROUPE_NODE_MODULES=" +
                              modules + " timeout 300 node " + kRoot + "/tests/cluster/demo_accuracy_client.mjs > " +
                              report_path + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << read_file(report_path);
  const json report = json::parse(read_file(report_path), nullptr, false);
  ASSERT_TRUE(report.is_object()) << read_file(report_path);
  for (const char* mode : {"whole", "streamed"}) {
    const double accuracy = report[mode]["correct"].get<double>() / report[mode]["total"].get<double>();
    std::printf("[ demo ] troupe serve + openai npm client, %s: %.3f exact, %d with reasoning_content (%.1f s for both)\n",
                mode, accuracy, report[mode]["with_reasoning"].get<int>(), report["seconds"].get<double>());
    EXPECT_NEAR(accuracy, cpu_figure_, kOnePoint) << mode << ": " << report[mode]["wrong"].dump();
    EXPECT_EQ(report[mode]["with_reasoning"], ps_.size()) << mode;
  }
}

TEST_F(DemoAccuracy, HeadWithTwoWorkersPp2AndServeWithTwoTensorParallelRanks) {
  Cluster cluster("demo-pp2");
  const int http = free_port();
  cluster.start_serving_head(kBf16, 2, 1, http, kToken, kEngineFlags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1"});
  ASSERT_TRUE(wait_healthy(http, milliseconds(120000))) << cluster.log("head") << cluster.log("worker_a");
  const HttpRun pp2 = stream_all(http, ps_, 32);
  std::printf("[ demo ] head + 2 workers, PP=2: %.3f exact, %d failed\n", pp2.accuracy, pp2.failed);
  EXPECT_EQ(pp2.failed, 0);
  EXPECT_NEAR(pp2.accuracy, cpu_figure_, kOnePoint);

  const int port = free_port();
  std::vector<std::string> args = {"serve", "--model", kBf16, "--port", std::to_string(port),
                                   "--tensor-parallel-size", "2"};
  for (const auto& flag : kEngineFlags) args.push_back(flag);
  cluster.start("serve_tp2", args, kToken);
  ASSERT_TRUE(wait_healthy(port, milliseconds(120000))) << cluster.log("serve_tp2");
  const HttpRun tp2 = stream_all(port, ps_, 32);
  std::printf("[ demo ] troupe serve --tp 2 (CPU ranks): %.3f exact, %d failed\n", tp2.accuracy, tp2.failed);
  EXPECT_EQ(tp2.failed, 0);
  EXPECT_NEAR(tp2.accuracy, cpu_figure_, kOnePoint);
}

// Two replicas of PP=2; `kill -9` of group 1's worker at `stage` once every lane streams.
void kill_a_stage_while_streams_run(int stage, const json& ps, double figure) {
  Cluster cluster("demo-kill9-stage" + std::to_string(stage));
  const int http = free_port();
  cluster.start_serving_head(kBf16, 2, 2, http, kToken, kEngineFlags);
  for (const char* worker : {"worker_a", "worker_b", "worker_c", "worker_d"})
    cluster.start_worker(worker, kToken, true, {"--num-threads", "1"});
  // Both groups ready, at any epoch: a group the supervisor restarted while starting is ready too.
  ASSERT_TRUE(wait_until([&] {
    const json s = cluster.status();
    return group_ready_epoch(s, 0) > 0 && group_ready_epoch(s, 1) > 0;
  }, milliseconds(120000))) << cluster.log("head");
  ASSERT_TRUE(wait_healthy(http, milliseconds(10000)));
  json victim;
  const HttpRun run = stream_all(http, ps, 48, [&] {
    const json status = cluster.status();
    const json* node = node_at(status, 1, stage);
    ASSERT_NE(node, nullptr);
    victim = *node;
    ASSERT_EQ(::kill(victim["pid"].get<pid_t>(), SIGKILL), 0);
  });
  ASSERT_TRUE(victim.is_object()) << "the streams never all began";
  std::printf("[ demo ] 2 replicas of PP=2, kill -9 of stage %d mid-stream: %.3f exact, %d failed, %.0f resumed\n",
              stage, run.accuracy, run.failed, metric(http, "troupe:cluster_requests_resumed_total"));
  EXPECT_EQ(run.failed, 0) << cluster.log("head");
  EXPECT_NEAR(run.accuracy, figure, kOnePoint);
  EXPECT_GT(metric(http, "troupe:cluster_requests_resumed_total"), 0) << "the loss hit no running request";
}

TEST_F(DemoAccuracy, KillNineOfTheLastStageWhileStreamsRunLosesNoAnswer) { kill_a_stage_while_streams_run(1, ps_, cpu_figure_); }

// Stage 0 is the group's leader: it runs the group's scheduler.
TEST_F(DemoAccuracy, KillNineOfStageZeroWhileStreamsRunLosesNoAnswer) { kill_a_stage_while_streams_run(0, ps_, cpu_figure_); }

}  // namespace
}  // namespace troupe::testing_cluster

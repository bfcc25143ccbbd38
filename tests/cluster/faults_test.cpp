// Fault injection on loopback with the trained demo model (tests/fixtures/models/troupe-demo):
//   - the head killed (kill -9) while streams run, then restarted on the same ports;
//   - the receiving stage killed while a long prefill's activations flow to it over UCX;
//   - a model folder gone when a group restarts;
//   - the log file on a full disk (/dev/full);
//   - --stage-transport nccl on workers without GPUs.
// Each asserts what a client sees: a clear end (never a hang), a reason in /health, answers.
#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

using nlohmann::json;

const std::string kDemo = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/troupe-demo";
const std::string kToken = "faults-test-token";
const std::vector<std::string> kEngineFlags = {"--num-threads", "1", "--served-model-name", "troupe-demo"};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

json chat_body(int max_tokens, bool stream, const std::string& content = "What is 12 + 30?") {
  return json{{"model", "troupe-demo"},
              {"messages", json::array({json{{"role", "user"}, {"content", content}}})},
              {"max_tokens", max_tokens},
              {"ignore_eos", true},
              {"temperature", 0},
              {"stream", stream}};
}

// One whole chat completion: its status (-1 when no answer came) and its text.
std::pair<int, std::string> chat(int port, int max_tokens = 8) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  auto res = client.Post("/v1/chat/completions", chat_body(max_tokens, false).dump(), "application/json");
  if (!res) return {-1, ""};
  const json body = json::parse(res->body, nullptr, false);
  if (res->status != 200 || !body.is_object()) return {res->status, res->body};
  return {200, body["choices"][0]["message"]["content"].is_string()
                   ? body["choices"][0]["message"]["content"].get<std::string>()
                   : ""};
}

// A stream that runs until the server goes away; how it ended.
struct CutStream {
  std::atomic<bool> begun{false};
  bool done = false;       // [DONE] came: the stream was not cut
  bool answered = false;   // httplib returned a response (else: connection error)
  std::string error;       // httplib's error when it returned none
  double seconds_after_cut = -1;
};

void run_stream(int port, CutStream& out, const std::atomic<int64_t>& cut_at_ns) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(20, 0);  // the bound: a stream still open this long after the cut hangs
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = chat_body(1800, true).dump();  // the demo model's context is 2,048
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    out.begun = true;
    if (std::string(data, size).find("data: [DONE]") != std::string::npos) out.done = true;
    return true;
  };
  auto res = client.send(request);
  out.answered = bool(res);
  if (res) out.error = "HTTP " + std::to_string(res->status) + ": " + res->body.substr(0, 300);
  if (!res) out.error = httplib::to_string(res.error());
  const int64_t cut = cut_at_ns.load();
  if (cut > 0) out.seconds_after_cut = double(Clock::now().time_since_epoch().count() - cut) / 1e9;
}

TEST(Faults, HeadKilledMidStreamEndsItsStreamsAndWorkersRejoinTheRestartedHead) {
  Cluster cluster("head_kill9");
  const int http = free_port();
  cluster.start_serving_head(kDemo, 2, 1, http, kToken, kEngineFlags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1"});
  ASSERT_TRUE(wait_healthy(http, milliseconds(60000))) << cluster.log("head") << cluster.log("worker_a");
  ASSERT_EQ(chat(http).first, 200) << cluster.status().dump() << "\n" << cluster.log("head");

  constexpr int kStreams = 4;
  std::vector<CutStream> streams(kStreams);
  std::atomic<int64_t> cut_at_ns{0};
  std::vector<std::thread> clients;
  for (auto& stream : streams) clients.emplace_back([&] { run_stream(http, stream, cut_at_ns); });
  const bool all_begun = wait_until(
      [&] { return std::all_of(streams.begin(), streams.end(), [](const CutStream& s) { return s.begun.load(); }); },
      milliseconds(30000));
  cut_at_ns = Clock::now().time_since_epoch().count();
  ASSERT_EQ(::kill(cluster.head_pid(), SIGKILL), 0);
  for (auto& client : clients) client.join();
  ASSERT_TRUE(all_begun) << cluster.log("head");
  for (const CutStream& s : streams) {
    // A clear end: the connection closed at once (httplib: a read error), not the client's timeout.
    EXPECT_FALSE(s.done) << "a stream of 1,800 tokens finished although its head was killed";
    EXPECT_GE(s.seconds_after_cut, 0) << "it ended before the kill: " << s.error;
    EXPECT_LT(s.seconds_after_cut, 10.0) << "the stream hung until the client's read timeout";
    std::printf("[ faults ] stream cut by the head's kill -9: ended %.3f s later (%s)\n", s.seconds_after_cut,
                s.error.c_str());
  }
  ASSERT_EQ(Cluster::wait_exit(cluster.head_pid(), milliseconds(5000)), 128 + SIGKILL);

  // The same ports again: both workers rejoin within 5 s and serving resumes.
  std::remove(cluster.status_path().c_str());
  const auto restarted = Clock::now();
  cluster.start_serving_head(kDemo, 2, 1, http, kToken, kEngineFlags);
  ASSERT_TRUE(wait_until([&] { return num_active(cluster.status()) == 2; }, milliseconds(5000)))
      << cluster.status().dump() << "\nworker log:\n" << cluster.log("worker_a") << cluster.log("head");
  const double rejoined = seconds_since(restarted);
  ASSERT_TRUE(wait_healthy(http, milliseconds(30000))) << cluster.log("head");
  const double serving = seconds_since(restarted);
  const auto [status, text] = chat(http);
  EXPECT_EQ(status, 200) << text;
  EXPECT_FALSE(text.empty());
  std::printf("[ faults ] head restarted: both workers rejoined after %.2f s, serving after %.2f s\n", rejoined,
              serving);
  EXPECT_NE(cluster.log("worker_a").find("head lost"), std::string::npos) << cluster.log("worker_a");
}

// Stage 0 sends each step's activations to stage 1 over UCX; a prompt of ~1,500 tokens makes each
// prefill step carry about 1.5 MB. Stage 1 dies while they flow: stage 0 must not hang in its send
// (the group restarts at a later epoch) and every request resumes and finishes whole.
TEST(Faults, AReceivingStageKilledMidTransferDoesNotHangItsSender) {
  Cluster cluster("ucx_peer_dies");
  const int http = free_port();
  cluster.start_serving_head(kDemo, 2, 1, http, kToken, kEngineFlags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1"});
  // Ready at any epoch: a group the supervisor restarted while starting is ready too.
  uint64_t start_epoch = 0;
  ASSERT_TRUE(wait_until([&] { return (start_epoch = group_ready_epoch(cluster.status(), 0)) > 0; }, milliseconds(60000)))
      << cluster.log("head");
  ASSERT_TRUE(wait_healthy(http, milliseconds(10000)));
  std::string long_prompt;
  for (int i = 0; i < 150; ++i) long_prompt += "12 + 30 = 42. ";
  constexpr int kRequests = 6, kTokens = 24;
  std::vector<int> statuses(kRequests, 0), completion_tokens(kRequests, 0);
  std::atomic<int> sent{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i)
    clients.emplace_back([&, i] {
      httplib::Client client("127.0.0.1", http);
      client.set_read_timeout(120, 0);
      sent.fetch_add(1);
      auto res = client.Post("/v1/chat/completions", chat_body(kTokens, false, long_prompt).dump(), "application/json");
      statuses[size_t(i)] = res ? res->status : -1;
      const json body = res ? json::parse(res->body, nullptr, false) : json();
      if (body.is_object() && body.contains("usage")) completion_tokens[size_t(i)] = body["usage"]["completion_tokens"];
    });
  // Killed while the prompts' prefill flows from stage 0 to stage 1 (threads join on every path).
  const bool running =
      wait_until([&] { return metric(http, "troupe:num_requests_running") >= 1; }, milliseconds(10000));
  const json status = cluster.status();
  const json* receiver = node_at(status, 0, 1);
  const bool killed_one = running && receiver != nullptr && ::kill((*receiver)["pid"].get<pid_t>(), SIGKILL) == 0;
  const auto killed = Clock::now();
  for (auto& client : clients) client.join();
  const double finished = seconds_since(killed);
  ASSERT_TRUE(running) << "no request ran; statuses " << json(statuses).dump() << "\n" << cluster.log("head");
  ASSERT_TRUE(killed_one) << status.dump();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(statuses[size_t(i)], 200) << cluster.log("head");
    EXPECT_EQ(completion_tokens[size_t(i)], kTokens);
  }
  EXPECT_TRUE(group_ready_since(cluster.status(), 0, start_epoch + 1)) << cluster.status().dump();
  const double resumed = metric(http, "troupe:cluster_requests_resumed_total");
  std::printf("[ faults ] stage 1 killed mid-prefill: every request finished %.2f s later, %.0f resumed\n", finished,
              resumed);
  EXPECT_GT(resumed, 0) << "the kill hit no running request";
}

TEST(Faults, AModelFolderGoneKeepsTheGroupDownWithTheReasonInHealth) {
  Cluster cluster("model_gone");
  const std::string model = ::testing::TempDir() + "/troupe_model_gone_" + std::to_string(::getpid());
  std::filesystem::remove_all(model);
  std::filesystem::remove_all(model + ".moved");
  std::filesystem::copy(kDemo, model, std::filesystem::copy_options::recursive);
  const int http = free_port();
  cluster.start_serving_head(model, 2, 1, http, kToken, kEngineFlags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1"});
  ASSERT_TRUE(wait_healthy(http, milliseconds(60000))) << cluster.log("head");
  ASSERT_EQ(chat(http).first, 200) << cluster.status().dump() << "\n" << cluster.log("head");

  std::filesystem::rename(model, model + ".moved");
  const json before = cluster.status();
  const json* victim = node_at(before, 0, 1);
  ASSERT_NE(victim, nullptr);
  ASSERT_EQ(::kill((*victim)["pid"].get<pid_t>(), SIGKILL), 0);
  // Every reload fails: the group gives up after its restart intensity (5 in 60 s), then stays down.
  auto is_failed = [&] {
    const json s = cluster.status();
    return s.is_object() && s["groups"][0]["state"] == "failed";
  };
  ASSERT_TRUE(wait_until(is_failed, milliseconds(30000)))
      << cluster.status().dump() << "\n" << cluster.log("head");
  const json failed = cluster.status();
  EXPECT_NE(failed["groups"][0]["last_error"].get<std::string>().find("stage failed to load"), std::string::npos)
      << failed.dump();

  httplib::Client client("127.0.0.1", http);
  client.set_read_timeout(5, 0);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_NE(health->body.find("group 0 failed"), std::string::npos) << health->body;
  EXPECT_NE(health->body.find("stage failed to load"), std::string::npos) << health->body;
  EXPECT_NE(cluster.log("head").find("stage failed to load"), std::string::npos);
  EXPECT_NE(cluster.log("head").find("group 0 failed"), std::string::npos);
  std::printf("[ faults ] model folder gone: /health says %s\n", health->body.c_str());

  // Down, not looping: no new epoch, no restart, no new worker process over 2 s.
  // Each worker's log on its own: a line either writes after the failure (a stop it obeys) must
  // not shift the other's older lines past the mark.
  const std::vector<std::string> workers = {"worker_a", "worker_b"};
  std::vector<size_t> logged_before;
  for (const auto& w : workers) logged_before.push_back(cluster.log(w).size());
  std::this_thread::sleep_for(milliseconds(2000));
  const json later = cluster.status();
  EXPECT_EQ(later["groups"][0]["epoch"], failed["groups"][0]["epoch"]);
  EXPECT_EQ(later["groups"][0]["num_restarts"], failed["groups"][0]["num_restarts"]);
  for (size_t i = 0; i < workers.size(); ++i) {
    const std::string after = cluster.log(workers[i]);
    EXPECT_EQ(after.find("starting stage", logged_before[i]), std::string::npos)
        << workers[i] << ":\n" << after.substr(std::min(logged_before[i], after.size()));
  }
  std::filesystem::remove_all(model + ".moved");
}

// --stage-transport nccl on workers that compute on the CPU: every stage refuses to load, naming
// the flag to use, and the group ends failed with that reason (never a wait inside NCCL).
TEST(Faults, NcclStagesOnCpuWorkersAreRefusedWithTheReasonInHealth) {
  Cluster cluster("nccl_on_cpu");
  const int http = free_port();
  std::vector<std::string> flags = kEngineFlags;
  flags.insert(flags.end(), {"--stage-transport", "nccl"});
  cluster.start_serving_head(kDemo, 2, 1, http, kToken, flags);
  cluster.start_worker("worker_a", kToken, true, {"--num-threads", "1", "--device", "cpu"});
  cluster.start_worker("worker_b", kToken, true, {"--num-threads", "1", "--device", "cpu"});
  auto is_failed = [&] {
    const json s = cluster.status();
    return s.is_object() && s["groups"][0]["state"] == "failed";
  };
  ASSERT_TRUE(wait_until(is_failed, milliseconds(60000))) << cluster.status().dump() << "\n" << cluster.log("head");
  const std::string why = cluster.status()["groups"][0]["last_error"].get<std::string>();
  EXPECT_NE(why.find("--stage-transport nccl needs a GPU backend"), std::string::npos) << why;
  EXPECT_NE(why.find("--stage-transport host"), std::string::npos) << why;
  httplib::Client client("127.0.0.1", http);
  client.set_read_timeout(5, 0);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_NE(health->body.find("needs a GPU backend"), std::string::npos) << health->body;
  std::printf("[ faults ] nccl on CPU workers: /health says %s\n", health->body.c_str());
}

TEST(Faults, ALogFileOnAFullDiskIsReportedOnceAndServingGoesOn) {
  ASSERT_TRUE(std::filesystem::exists("/dev/full")) << "the test writes logs to /dev/full";
  Cluster cluster("log_full");
  const int port = free_port();
  std::vector<std::string> args = {"serve", "--model", kDemo, "--port", std::to_string(port), "--log-file",
                                   "/dev/full"};
  for (const auto& flag : kEngineFlags) args.push_back(flag);
  const pid_t serve = cluster.start("serve", args, kToken);
  ASSERT_TRUE(wait_healthy(port, milliseconds(60000))) << cluster.log("serve");
  for (int i = 0; i < 5; ++i) {
    const auto [status, text] = chat(port);
    EXPECT_EQ(status, 200) << text;
  }
  EXPECT_EQ(::kill(serve, 0), 0) << "the server died";
  const std::string err = cluster.log("serve");
  const std::string report = "cannot write the log file /dev/full (No space left on device)";
  const size_t first = err.find(report);
  EXPECT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find(report, first + 1), std::string::npos) << "reported more than once:\n" << err;
  EXPECT_EQ(err.find("listening on"), std::string::npos) << "log lines went to stderr, not the file:\n" << err;
}

}  // namespace
}  // namespace troupe::testing_cluster

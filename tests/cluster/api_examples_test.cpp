// The examples of the public API (examples/) as real processes on 127.0.0.1: stage hosts on
// ephemeral ports plus a coordinator. Outputs are checked against references computed here;
// lost or unreachable hosts must fail the coordinator within its timeout.
#include <cmath>
#include <cstdio>
#include <random>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

std::string example_binary(const std::string& name) {
  return (std::filesystem::path(TROUPE_EXAMPLES_DIR) / name).string();  // set by examples/CMakeLists.txt
}

// Processes with stdout and stderr in files; all SIGKILLed at the end.
class Processes {
 public:
  explicit Processes(const std::string& name)
      : dir_(::testing::TempDir() + "/troupe_api_" + name + "_" + std::to_string(::getpid())) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~Processes() {
    for (pid_t pid : pids_) ::kill(-pid, SIGKILL);
    for (pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
  }

  std::string path(const std::string& file) const { return dir_ + "/" + file; }
  std::string out(const std::string& name) const { return read_file(path(name + ".out")); }
  std::string err(const std::string& name) const { return read_file(path(name + ".err")); }

  pid_t start(const std::string& name, const std::string& binary, std::vector<std::string> args) {
    const std::string out_path = path(name + ".out"), err_path = path(name + ".err");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      ::dup2(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 1);
      ::dup2(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
      std::vector<char*> argv;
      std::string program = binary;
      argv.push_back(program.data());
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      std::fprintf(stderr, "cannot run %s\n", program.c_str());
      ::_exit(127);
    }
    ::setpgid(pid, pid);
    pids_.push_back(pid);
    return pid;
  }

  // Starts a stage host and returns its control address once it printed its port ("" if not).
  std::string start_host(const std::string& name, const std::string& binary) {
    host_pids_.push_back(start(name, binary, {"--host-stage"}));
    const std::string marker = "listening on port ";
    std::string text;
    wait_until([&] { return (text = out(name)).find('\n') != std::string::npos; }, milliseconds(10000));
    const size_t at = text.find(marker);
    if (at == std::string::npos) return "";
    return "127.0.0.1:" + std::to_string(std::stoi(text.substr(at + marker.size())));
  }

 // Sends `signal` to the `index`-th host started.
  bool signal_host(size_t index, int signal) const {
    return index < host_pids_.size() && ::kill(host_pids_[index], signal) == 0;
  }

 private:
  std::string dir_;
  std::vector<pid_t> pids_;
  std::vector<pid_t> host_pids_;
};

using Values = std::vector<float>;

// Random 1-D inputs of awkward sizes, written one per line with 9 significant digits (which
// round-trips a float exactly, so the test's copy equals what the coordinator reads).
std::vector<Values> write_inputs(const std::string& path, const std::vector<size_t>& sizes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  std::vector<Values> inputs;
  std::FILE* file = std::fopen(path.c_str(), "w");
  for (size_t size : sizes) {
    Values values(size);
    for (float& v : values) {
      v = uniform(rng);
      std::fprintf(file, "%.9g ", v);
    }
    std::fprintf(file, "\n");
    inputs.push_back(values);
  }
  std::fclose(file);
  return inputs;
}

// `output K V...` lines, by K.
std::map<size_t, Values> parse_outputs(const std::string& text) {
  std::map<size_t, Values> outputs;
  std::stringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::stringstream words(line);
    std::string tag;
    size_t index = 0;
    if (!(words >> tag >> index) || tag != "output") continue;
    Values values;
    for (float v; words >> v;) values.push_back(v);
    outputs[index] = values;
  }
  return outputs;
}

std::vector<double> softmax_of_affine(const Values& x) {  // the two stages, in double
  std::vector<double> y(x.size());
  double max_value = -1e300, sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i) max_value = std::max(max_value, y[i] = 2.0 * x[i] + 1.0);
  for (double& v : y) sum += (v = std::exp(v - max_value));
  for (double& v : y) v /= sum;
  return y;
}

std::vector<double> normalized(const Values& x) {
  double sum = 0.0;
  for (float v : x) sum += double{v} * v;
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(sum);
  return y;
}

void expect_close(const Values& got, const std::vector<double>& want, size_t index) {
  ASSERT_EQ(got.size(), want.size()) << "output " << index;
  for (size_t i = 0; i < want.size(); ++i)  // fp32 stages against a double reference
    EXPECT_NEAR(got[i], want[i], 1e-6 + 1e-5 * std::abs(want[i])) << "output " << index << " value " << i;
}

std::string two_stage() { return example_binary("two_stage_pipeline"); }
std::string fan_out() { return example_binary("replica_fan_out"); }

int wait_exit(pid_t pid, milliseconds timeout = milliseconds(20000)) { return Cluster::wait_exit(pid, timeout); }

TEST(ApiExamples, TwoStagePipelineAcrossTwoProcessesMatchesReference) {
  Processes p("two_stage");
  const std::string a = p.start_host("host0", two_stage()), b = p.start_host("host1", two_stage());
  ASSERT_FALSE(a.empty() || b.empty()) << p.err("host0") << p.err("host1");
  const auto inputs = write_inputs(p.path("inputs.txt"), {1, 19, 99, 300, 2}, 7);
  const pid_t coordinator =
      p.start("coordinator", two_stage(), {"--connect", a + "," + b, "--input", p.path("inputs.txt")});
  ASSERT_EQ(wait_exit(coordinator), 0) << p.err("coordinator");
  const auto outputs = parse_outputs(p.out("coordinator"));
  ASSERT_EQ(outputs.size(), inputs.size()) << p.out("coordinator");
  for (size_t k = 0; k < inputs.size(); ++k) expect_close(outputs.at(k), softmax_of_affine(inputs[k]), k);
}

TEST(ApiExamples, StageErrorsComeBackAsClearErrorsAndHostsStayUp) {
  Processes p("stage_errors");
  const std::string a = p.start_host("host0", two_stage()), b = p.start_host("host1", two_stage());
  ASSERT_FALSE(a.empty() || b.empty()) << p.err("host0") << p.err("host1");
  const auto inputs = write_inputs(p.path("inputs.txt"), {5}, 11);
  const std::vector<std::string> common = {"--connect", a + "," + b, "--input", p.path("inputs.txt")};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  // A stage function's error names the stage and carries the function's message.
  pid_t run = p.start("failing", two_stage(), with({"--stages", "affine,fail"}));
  EXPECT_EQ(wait_exit(run), 1);
  EXPECT_NE(p.err("failing").find("stage 1 'fail' on " + b + ": the 'fail' stage rejects every input"),
            std::string::npos) << p.err("failing");
  // An unknown function is refused at setup, listing what the host offers.
  run = p.start("unknown", two_stage(), with({"--stages", "missing,softmax"}));
  EXPECT_EQ(wait_exit(run), 1);
  EXPECT_NE(p.err("unknown").find("stage 0 'missing' on " + a + ": no stage function named 'missing' is registered "
                                  "(registered: affine, fail, softmax)"),
            std::string::npos) << p.err("unknown");
  // Mismatched counts are the example's own usage error.
  run = p.start("mismatch", two_stage(), with({"--stages", "affine"}));
  EXPECT_EQ(wait_exit(run), 1);
  // The same hosts still serve a good pipeline.
  run = p.start("good", two_stage(), common);
  ASSERT_EQ(wait_exit(run), 0) << p.err("good");
  const auto outputs = parse_outputs(p.out("good"));
  ASSERT_EQ(outputs.size(), 1u);
  expect_close(outputs.at(0), softmax_of_affine(inputs[0]), 0);
}

// Runs the pipeline in a loop, loses stage host `victim` (SIGKILL, or SIGSTOP = hung) and expects
// the coordinator to fail with a clear error within one run's timeout.
void lose_a_stage_host(int victim, int signal, const std::string& expected) {
  Processes p("lose_" + std::to_string(victim) + "_" + std::to_string(signal));
  std::string addresses[2];
  for (int i = 0; i < 2; ++i) {
    addresses[i] = p.start_host("host" + std::to_string(i), two_stage());
    ASSERT_FALSE(addresses[i].empty()) << p.err("host" + std::to_string(i));
  }
  write_inputs(p.path("inputs.txt"), {3, 8}, 13);
  const int64_t timeout_ms = 5000;
  const pid_t coordinator = p.start("coordinator", two_stage(),
                                    {"--connect", addresses[0] + "," + addresses[1], "--input", p.path("inputs.txt"),
                                     "--repeat", "100000", "--interval-ms", "10", "--timeout-ms",
                                     std::to_string(timeout_ms)});
  ASSERT_TRUE(wait_until([&] { return parse_outputs(p.out("coordinator")).size() == 2; }, milliseconds(10000)))
      << p.err("coordinator");
  ASSERT_TRUE(p.signal_host(victim, signal));
  const auto lost_at = Clock::now();
  const int code = wait_exit(coordinator, milliseconds(timeout_ms + 2000));
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - lost_at).count();
  EXPECT_EQ(code, 1) << "the coordinator did not fail within " << timeout_ms + 2000 << " ms";
  EXPECT_LE(waited, timeout_ms + 1000);
  const std::string err = p.err("coordinator");
  EXPECT_NE(err.find(expected), std::string::npos) << err;
  EXPECT_NE(err.find(addresses[victim]), std::string::npos) << "the error should name the lost host: " << err;
  std::printf("lost stage %d (signal %d): coordinator failed after %lld ms: %s", victim, signal,
              static_cast<long long>(waited), err.c_str());
}

TEST(ApiExamples, KilledLastStageHostFailsTheRunQuickly) { lose_a_stage_host(1, SIGKILL, "pipeline broken"); }
TEST(ApiExamples, KilledFirstStageHostFailsTheRunQuickly) { lose_a_stage_host(0, SIGKILL, "pipeline broken"); }
TEST(ApiExamples, HungStageHostFailsTheRunWithinItsTimeout) { lose_a_stage_host(1, SIGSTOP, "was lost"); }

TEST(ApiExamples, UnreachableHostFailsWithinTheConnectTimeout) {
  Processes p("unreachable");
  const std::string a = p.start_host("host0", two_stage());
  ASSERT_FALSE(a.empty()) << p.err("host0");
  write_inputs(p.path("inputs.txt"), {3}, 17);
  const std::string nobody = "127.0.0.1:" + std::to_string(free_port());
  const auto started = Clock::now();
  const pid_t run = p.start("coordinator", two_stage(),
                            {"--connect", a + "," + nobody, "--input", p.path("inputs.txt"), "--timeout-ms", "2000"});
  EXPECT_EQ(wait_exit(run, milliseconds(5000)), 1);
  EXPECT_LE(std::chrono::duration_cast<milliseconds>(Clock::now() - started).count(), 4000);
  EXPECT_NE(p.err("coordinator").find("stage 1 'softmax' on " + nobody + ": cannot reach stage host " + nobody),
            std::string::npos) << p.err("coordinator");
}

TEST(ApiExamples, ReplicaFanOutSpreadsInputsRoundRobinAndMatchesReference) {
  Processes p("fan_out");
  std::vector<std::string> hosts;
  for (int i = 0; i < 3; ++i) {
    hosts.push_back(p.start_host("replica" + std::to_string(i), fan_out()));
    ASSERT_FALSE(hosts.back().empty()) << p.err("replica" + std::to_string(i));
  }
  const std::vector<size_t> sizes = {1, 19, 99, 4, 500, 7, 2, 33, 64};
  const auto inputs = write_inputs(p.path("inputs.txt"), sizes, 23);
  const pid_t run = p.start("coordinator", fan_out(),
                            {"--connect", hosts[0] + "," + hosts[1] + "," + hosts[2], "--input", p.path("inputs.txt")});
  ASSERT_EQ(wait_exit(run), 0) << p.err("coordinator");
  const auto outputs = parse_outputs(p.out("coordinator"));
  ASSERT_EQ(outputs.size(), inputs.size()) << p.out("coordinator");
  for (size_t k = 0; k < inputs.size(); ++k) expect_close(outputs.at(k), normalized(inputs[k]), k);
  // Replica r got inputs r, r + 3, r + 6, in that order (each logs the sizes it normalized).
  for (size_t r = 0; r < 3; ++r) {
    std::vector<size_t> seen;
    std::stringstream log(p.err("replica" + std::to_string(r)));
    for (std::string line; std::getline(log, line);) {
      size_t at = line.find(" normalized ");
      if (at != std::string::npos) seen.push_back(std::stoul(line.substr(at + 12)));
    }
    EXPECT_EQ(seen, (std::vector<size_t>{sizes[r], sizes[r + 3], sizes[r + 6]})) << "replica " << r;
  }
}

TEST(ApiExamples, ReplicaErrorNamesTheInputAndTheReplica) {
  Processes p("fan_out_error");
  std::vector<std::string> hosts;
  for (int i = 0; i < 2; ++i) {
    hosts.push_back(p.start_host("replica" + std::to_string(i), fan_out()));
    ASSERT_FALSE(hosts.back().empty());
  }
  std::FILE* file = std::fopen(p.path("inputs.txt").c_str(), "w");
  std::fprintf(file, "3 4\n1 2\n5 12\n0 0 0\n");  // input 3 has zero norm: replica 1 refuses it
  std::fclose(file);
  const pid_t run =
      p.start("coordinator", fan_out(), {"--connect", hosts[0] + "," + hosts[1], "--input", p.path("inputs.txt")});
  EXPECT_EQ(wait_exit(run), 1);
  EXPECT_NE(p.err("coordinator").find("input 3 on replica 1 (" + hosts[1] + "): stage 0 'normalize' on " + hosts[1] +
                                      ": normalize: the input has zero norm"),
            std::string::npos) << p.err("coordinator");
}

}  // namespace
}  // namespace troupe::testing_cluster

// troupe-demo, the small trained DeepSeek-V3 (tools/train_demo_model.py), judges the CUDA paths
// that random-weight fixtures cannot: bf16 weights and cache, FP8 block weights kept in HBM with
// activations quantized per 128 channels. `troupe generate --device cuda --messages-jsonl` answers
// the 200 problems of tests/fixtures/demo/problems.json greedily, all batched (prefill chunks and
// decode steps of up to 200 rows, so both the GEMV and the GEMM paths run); each checkpoint must
// be within one point of transformers' accuracy on the same problems.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// `troupe` beside this test binary (the GPU bundle's bin/, the build tree's parent), else the one
// it was built with.
std::string troupe_binary() {
  const fs::path self = fs::read_symlink("/proc/self/exe");
  for (const fs::path& p : {self.parent_path() / "troupe", self.parent_path().parent_path() / "troupe"})
    if (fs::exists(p)) return p.string();
  return TROUPE_BINARY;
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \n"), last = s.find_last_not_of(" \n");
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

std::string answer_of(const std::string& text) {
  const size_t end = text.rfind("</think>");
  return end == std::string::npos ? "" : trim(text.substr(end + 8));
}

void expect_demo_accuracy(const std::string& model_name, const std::string& oracle_field) {
  const std::string root = troupe_source_dir();
  const json problems = json::parse(std::ifstream(root + "/tests/fixtures/demo/problems.json"))["problems"];
  const std::string dir = ::testing::TempDir() + "/troupe_cuda_demo_" + std::to_string(::getpid());
  fs::create_directories(dir);
  const std::string input = dir + "/problems.jsonl", output = dir + "/" + model_name + ".jsonl";
  {
    std::ofstream file(input);
    for (const auto& p : problems) file << json{{"messages", p["messages"]}}.dump() << "\n";
  }
  const std::string command = troupe_binary() + " generate --device cuda --model " + root + "/tests/fixtures/models/" +
                              model_name + " --messages-jsonl " + input +
                              " --temperature 0 --max-tokens 400 --log-level warn > " + output + " 2> " + output + ".err";
  ASSERT_EQ(std::system(command.c_str()), 0) << std::ifstream(output + ".err").rdbuf();
  std::ifstream lines(output);
  std::string line;
  std::vector<std::string> texts(problems.size());
  while (std::getline(lines, line)) {
    const json answer = json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(answer.is_discarded()) << "not a JSON line in troupe generate's output: " << line;
    if (answer.contains("summary")) continue;  // the last line: counts and tokens per second
    ASSERT_TRUE(answer.contains("index") && answer.contains("text")) << line;
    const size_t index = answer["index"].get<size_t>();
    ASSERT_LT(index, texts.size());
    texts[index] = answer["text"].get<std::string>();
  }
  int correct = 0, oracle_correct = 0, count = 0;
  for (const auto& p : problems) {
    correct += answer_of(texts[size_t(count)]) == p["answer"];
    oracle_correct += answer_of(p[oracle_field].get<std::string>()) == p["answer"];
    ++count;
  }
  const double accuracy = double(correct) / count, oracle = double(oracle_correct) / count;
  std::printf("%s on CUDA: %.3f exact (transformers %s: %.3f)\n", model_name.c_str(), accuracy, oracle_field.c_str(),
              oracle);
  EXPECT_GE(accuracy, oracle - 0.01) << model_name;
  fs::remove_all(dir);
}

TEST(CudaDemo, Bf16CheckpointAnswersAsTransformers) {
  TROUPE_REQUIRE_GPU();
  expect_demo_accuracy("troupe-demo", "transformers_bf16");
}

TEST(CudaDemo, Fp8CheckpointAnswersAsTransformers) {
  TROUPE_REQUIRE_GPU();
  expect_demo_accuracy("troupe-demo-fp8", "transformers_fp8");
}

// Two replicas of PP=2, four worker processes on this one GPU (the head gives each stage 0.15 of
// it), 48 streams at a time, kill -9 of a worker of group 1 once every lane streams: every stream
// completes and the answers keep transformers' accuracy (bench/demo_accuracy_bench.py's cluster
// path, which prints the record this reads).
TEST(CudaDemo, KillNineOfAWorkerOnOneGpuLosesNoAnswer) {
  TROUPE_REQUIRE_GPU();
  const std::string root = troupe_source_dir();
  const std::string out = ::testing::TempDir() + "/troupe_cuda_demo_kill_" + std::to_string(::getpid()) + ".json";
  const std::string command = "python3 " + root + "/bench/demo_accuracy_bench.py --troupe " + troupe_binary() +
                              " --out " + out + " cluster:" + root + "/tests/fixtures/models/troupe-demo:cuda:kill > " +
                              out + ".log 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << std::ifstream(out + ".log").rdbuf();
  const json records = json::parse(std::ifstream(out));  // a list of records
  ASSERT_EQ(records.size(), 1u);
  const json& r = records[0];
  std::printf("%s\n", r.dump().c_str());
  EXPECT_EQ(r["failed_streams"].get<int>(), 0);
  EXPECT_GT(r["killed_worker_pid"].get<int>(), 0) << "the kill must have happened";
  EXPECT_GE(r["value"].get<double>(), r["limit"].get<double>() - 0.01);
  fs::remove(out);
  fs::remove(out + ".log");
}

// The same cluster with fp32 weights, once without and once with the kill -9: a resumed greedy
// request continues from its prompt plus the tokens already streamed, so in fp32 (no bf16
// rounding that a different batch could flip) every text equals the run without the kill.
TEST(CudaDemo, KillNineWithFp32WeightsChangesNoText) {
  TROUPE_REQUIRE_GPU();
  const std::string root = troupe_source_dir();
  const std::string model = root + "/tests/fixtures/models/troupe-demo";
  const std::string out = ::testing::TempDir() + "/troupe_cuda_demo_fp32_" + std::to_string(::getpid()) + ".json";
  const std::string command = "python3 " + root + "/bench/demo_accuracy_bench.py --troupe " + troupe_binary() +
                              " --out " + out + " cluster:" + model + ":cuda:float32 cluster:" + model +
                              ":cuda:kill:float32 > " + out + ".log 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << std::ifstream(out + ".log").rdbuf();
  const json records = json::parse(std::ifstream(out));
  ASSERT_EQ(records.size(), 2u);
  const json &plain = records[0], &killed = records[1];
  EXPECT_EQ(killed["failed_streams"].get<int>(), 0);
  EXPECT_GT(killed["killed_worker_pid"].get<int>(), 0) << "the kill must have happened";
  ASSERT_EQ(plain["texts"].size(), killed["texts"].size());
  int equal = 0;
  for (size_t i = 0; i < plain["texts"].size(); ++i) {
    EXPECT_EQ(plain["texts"][i], killed["texts"][i]) << "problem " << i;
    equal += plain["texts"][i] == killed["texts"][i];
  }
  std::printf("fp32, kill -9 of a worker: %d/%zu texts equal to the run without the kill\n", equal,
              plain["texts"].size());
  fs::remove(out);
  fs::remove(out + ".log");
}

}  // namespace
}  // namespace troupe

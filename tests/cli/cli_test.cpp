// The `troupe` binary as a user meets it: help works, bad input is one clear line and exit != 0.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <sys/wait.h>

namespace {

struct CliRun {
  int exit_code;
  std::string output;  // stdout + stderr
};

CliRun run_troupe(const std::string& args) {
  std::string command = std::string(TROUPE_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

size_t count_lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

TEST(Cli, HelpOnEverySubcommand) {
  for (std::string sub : {"", "serve", "head", "worker", "generate", "bench", "tokenize"}) {
    CliRun run = run_troupe(sub + " --help");
    EXPECT_EQ(run.exit_code, 0) << sub << ": " << run.output;
    EXPECT_NE(run.output.find("Usage:"), std::string::npos) << sub;
    if (!sub.empty()) EXPECT_NE(run.output.find("--log-level"), std::string::npos) << sub;
  }
}

TEST(Cli, BadInputIsOneLineAndNonZero) {
  const char* cases[][2] = {
      {"serve --no-such-flag", "--no-such-flag"},
      {"serve --port abc", "--port"},
      {"serve --port 0", "--port"},
      {"serve --block-size 3", "--block-size"},
      {"serve --config /nonexistent/troupe.toml", "/nonexistent/troupe.toml"},
      {"serve --log-level loud", "--log-level"},
      {"worker --join nohostport", "--join"},
      {"frobnicate", "frobnicate"},
      {"", "subcommand"},
      {"generate --model /nonexistent/model --prompt-ids 1,2", "/nonexistent/model"},
      {"generate --model /nonexistent/model --prompt-ids 1,x", "x"},
      {"tokenize --model /nonexistent/model --text hi", "/nonexistent/model"},
  };
  for (const auto& c : cases) {
    CliRun run = run_troupe(c[0]);
    EXPECT_NE(run.exit_code, 0) << c[0];
    EXPECT_LT(run.exit_code, 128) << c[0] << " crashed";
    EXPECT_EQ(count_lines(run.output), 1u) << c[0] << ": " << run.output;
    EXPECT_NE(run.output.find("troupe: error:"), std::string::npos) << run.output;
    EXPECT_NE(run.output.find(c[1]), std::string::npos) << c[0] << ": " << run.output;
  }
}

TEST(Cli, ConfigFileKeysAreFlagsAndTheCommandLineWins) {
  const std::string path = testing::TempDir() + "/troupe_cli_test.toml";
  std::ofstream(path) << "port = 0\n";
  CliRun from_file = run_troupe("serve --config " + path);
  EXPECT_EQ(from_file.exit_code, 2);
  EXPECT_NE(from_file.output.find("--port: must be in"), std::string::npos) << from_file.output;

  // The file's bad block size is overridden by a good one, so the next check (port) speaks.
  std::ofstream(path) << "block-size = 5\n";
  CliRun overridden = run_troupe("serve --config " + path + " --block-size 16 --port 0");
  EXPECT_EQ(overridden.exit_code, 2);
  EXPECT_NE(overridden.output.find("--port"), std::string::npos) << overridden.output;

  std::ofstream(path) << "no-such-key = 1\n";
  CliRun unknown = run_troupe("serve --config " + path);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("no-such-key"), std::string::npos) << unknown.output;
}

// The "token_ids":[...] of a `generate --json` line ("" when absent).
std::string token_ids_of(const std::string& output) {
  const size_t begin = output.find("\"token_ids\":[");
  if (begin == std::string::npos) return "";
  return output.substr(begin, output.find(']', begin) - begin + 1);
}

TEST(Cli, GenerateWithTwoTensorParallelRanksMatchesOne) {
  for (const char* fixture : {"llama-tiny", "deepseek-v3-tiny"}) {
    SCOPED_TRACE(fixture);
    const std::string base = std::string("generate --model ") + TROUPE_SOURCE_DIR + "/tests/fixtures/models/" +
                             fixture + " --prompt-ids 1,2,3,4 --max-tokens 12 --temperature 0 --ignore-eos --json "
                             "--device cpu";
    CliRun one = run_troupe(base + " --tp 1");
    CliRun two = run_troupe(base + " --tp 2");
    ASSERT_EQ(one.exit_code, 0) << one.output;
    ASSERT_EQ(two.exit_code, 0) << two.output;
    EXPECT_NE(two.output.find("tensor parallel: 2 ranks"), std::string::npos) << "--tp 2 was ignored:\n" << two.output;
    ASSERT_FALSE(token_ids_of(one.output).empty()) << one.output;
    EXPECT_EQ(token_ids_of(two.output), token_ids_of(one.output));
  }
}

}  // namespace

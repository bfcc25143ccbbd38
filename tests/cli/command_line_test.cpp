// parse_command_line: each setting that used to be only an environment variable is a flag and a
// config-file key: the flag beats the file, both beat the environment, which beats the default.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cli/command_line.hpp"

namespace troupe::cli {
namespace {

struct EnvSetting {
  const char* subcommand;
  const char* flag;       // its long name is the TOML key
  const char* env;
  std::string default_value;
  std::string env_value;
  std::string expected_from_env;  // what the env value becomes (LWS_LEADER_ADDRESS gains a port)
  std::string flag_value;
  std::string toml_value;   // as written in the file
  std::string from_toml;    // what it parses to
  std::function<std::string(const Config&)> field;
};

std::vector<EnvSetting> settings() {
  return {
      {"head", "status-file", "TROUPE_CLUSTER_STATUS_FILE", "", "/env/status.json", "/env/status.json",
       "/flag/status.json", "\"/toml/status.json\"", "/toml/status.json",
       [](const Config& c) { return c.status_file; }},
      {"head", "request-wait-ms", "TROUPE_REQUEST_WAIT_MS", "60000", "250", "250", "500", "750", "750",
       [](const Config& c) { return std::to_string(c.request_wait_ms); }},
      {"head", "heartbeat-ms", "TROUPE_HEARTBEAT_MS", "1000", "200", "200", "300", "400", "400",
       [](const Config& c) { return std::to_string(c.heartbeat_ms); }},
      {"worker", "heartbeat-timeout-ms", "TROUPE_HEARTBEAT_TIMEOUT_MS", "5000", "1500", "1500", "2500", "3500",
       "3500", [](const Config& c) { return std::to_string(c.heartbeat_timeout_ms); }},
      {"worker", "advertise-host", "TROUPE_ADVERTISE_HOST", "", "env-host", "env-host", "flag-host",
       "\"toml-host\"", "toml-host", [](const Config& c) { return c.advertise_host; }},
      {"worker", "worker-index", "LWS_WORKER_INDEX", "-1", "3", "3", "5", "7", "7",
       [](const Config& c) { return std::to_string(c.worker_index); }},
      {"worker", "join", "LWS_LEADER_ADDRESS", "", "lws-0.lws", "lws-0.lws:7400", "flag-head:7500",
       "\"toml-head:7600\"", "toml-head:7600", [](const Config& c) { return c.join; }},
      {"worker", "token", "TROUPE_TOKEN", "", "env-token", "env-token", "flag-token", "\"toml-token\"",
       "toml-token", [](const Config& c) { return c.token; }},
      {"serve", "api-key", "TROUPE_API_KEY", "", "env-key", "env-key", "flag-key", "\"toml-key\"", "toml-key",
       [](const Config& c) { return c.api_key; }},
      {"head", "api-key", "TROUPE_API_KEY", "", "env-key", "env-key", "flag-key", "\"toml-key\"", "toml-key",
       [](const Config& c) { return c.api_key; }},
  };
}

class CommandLineParse : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const EnvSetting& s : settings()) ::unsetenv(s.env);
  }
  void TearDown() override { SetUp(); }

  static Config parse(std::vector<std::string> args) {
    args.insert(args.begin(), "troupe");
    ParsedCommandLine parsed = parse_command_line(args);
    EXPECT_FALSE(parsed.exit_code.has_value()) << args[1] << " " << (args.size() > 2 ? args[2] : "");
    return parsed.command.config;
  }
  static std::string toml(const EnvSetting& s) {
    const std::string path = ::testing::TempDir() + "/troupe_command_line_" + s.flag + ".toml";
    std::ofstream(path) << s.flag << " = " << s.toml_value << "\n";
    return path;
  }
};

TEST_F(CommandLineParse, EachSettingIsAFlagAndATomlKeyAndItsEnvironmentVariableIsTheDefault) {
  for (const EnvSetting& s : settings()) {
    SCOPED_TRACE(s.flag);
    const std::string flag = std::string("--") + s.flag;
    EXPECT_EQ(s.field(parse({s.subcommand})), s.default_value);
    EXPECT_EQ(s.field(parse({s.subcommand, flag, s.flag_value})), s.flag_value);
    EXPECT_EQ(s.field(parse({s.subcommand, "--config", toml(s)})), s.from_toml);

    ::setenv(s.env, s.env_value.c_str(), 1);
    EXPECT_EQ(s.field(parse({s.subcommand})), s.expected_from_env) << "the environment beats the default";
    EXPECT_EQ(s.field(parse({s.subcommand, flag, s.flag_value})), s.flag_value) << "the flag beats the environment";
    EXPECT_EQ(s.field(parse({s.subcommand, "--config", toml(s)})), s.from_toml) << "the file beats the environment";
    EXPECT_EQ(s.field(parse({s.subcommand, "--config", toml(s), flag, s.flag_value})), s.flag_value)
        << "the flag beats the file";
    ::unsetenv(s.env);
  }
}

TEST_F(CommandLineParse, SubcommandAndEngineArgsParse) {
  ParsedCommandLine parsed =
      parse_command_line({"troupe", "generate", "--model", "/m", "--tp", "2", "--block-size", "32", "--prompt-ids", "1"});
  ASSERT_FALSE(parsed.exit_code.has_value());
  EXPECT_EQ(parsed.command.subcommand, Subcommand::generate);
  EXPECT_EQ(parsed.command.config.tensor_parallel_size, 2);
  EXPECT_EQ(parsed.command.config.block_size, 32);
  EXPECT_EQ(parsed.command.generate.prompt_ids, "1");
}

TEST_F(CommandLineParse, ObservabilityFlags) {
  Config defaults = parse({"serve"});
  EXPECT_FALSE(defaults.protect_metrics);
  EXPECT_EQ(defaults.metrics_prefix, "troupe:");
  EXPECT_EQ(defaults.log_format, "text");
  EXPECT_FALSE(defaults.log_requests_content);
  for (const char* sub : {"serve", "head"}) {
    Config c = parse({sub, "--api-key", "k1,k2", "--protect-metrics", "--metrics-prefix", "vllm:", "--log-format",
                      "json", "--log-requests-content"});
    EXPECT_EQ(c.api_key, "k1,k2");
    EXPECT_TRUE(c.protect_metrics);
    EXPECT_EQ(c.metrics_prefix, "vllm:");
    EXPECT_EQ(c.log_format, "json");
    EXPECT_TRUE(c.log_requests_content);
  }
  EXPECT_EQ(parse_command_line({"troupe", "serve", "--log-format", "xml"}).exit_code, 2);
  EXPECT_EQ(parse_command_line({"troupe", "serve", "--metrics-prefix", "a-b"}).exit_code, 2);
  EXPECT_EQ(parse_command_line({"troupe", "serve", "--api-key", "k1,,k2"}).exit_code, 2);
}

TEST_F(CommandLineParse, BadValuesExitWithTwo) {
  EXPECT_EQ(parse_command_line({"troupe", "head", "--heartbeat-ms", "0"}).exit_code, 2);
  EXPECT_EQ(parse_command_line({"troupe", "head", "--request-wait-ms", "x"}).exit_code, 2);
  ::setenv("LWS_WORKER_INDEX", "x1", 1);
  EXPECT_EQ(parse_command_line({"troupe", "worker"}).exit_code, 2);
}

TEST(CommandLineFlags, ServeLifecycle) {
  ParsedCommandLine defaults = parse_command_line({"troupe", "serve"});
  ASSERT_FALSE(defaults.exit_code);
  EXPECT_EQ(defaults.command.config.shutdown_timeout_s, 30);
  EXPECT_EQ(defaults.command.config.max_waiting_requests, 0);
  EXPECT_EQ(defaults.command.config.request_timeout_s, 0);
  ParsedCommandLine given = parse_command_line({"troupe", "serve", "--shutdown-timeout", "7.5",
                                                "--max-waiting-requests", "3", "--request-timeout", "60"});
  ASSERT_FALSE(given.exit_code);
  EXPECT_EQ(given.command.config.shutdown_timeout_s, 7.5);
  EXPECT_EQ(given.command.config.max_waiting_requests, 3);
  EXPECT_EQ(given.command.config.request_timeout_s, 60);
}

TEST(CommandLineFlags, HeadShutdownTimeout) {
  ParsedCommandLine defaults = parse_command_line({"troupe", "head"});
  ASSERT_FALSE(defaults.exit_code);
  EXPECT_EQ(defaults.command.config.shutdown_timeout_s, 30);
  ParsedCommandLine given = parse_command_line({"troupe", "head", "--shutdown-timeout", "45"});
  ASSERT_FALSE(given.exit_code);
  EXPECT_EQ(given.command.config.shutdown_timeout_s, 45);
  EXPECT_EQ(parse_command_line({"troupe", "head", "--shutdown-timeout", "-1"}).exit_code, 2);
}

TEST(CommandLineFlags, ToolCallFlags) {
  for (const char* sub : {"serve", "head"}) {
    ParsedCommandLine given =
        parse_command_line({"troupe", sub, "--enable-auto-tool-choice", "--tool-call-parser", "deepseek_v3"});
    ASSERT_FALSE(given.exit_code) << sub;
    EXPECT_TRUE(given.command.config.enable_auto_tool_choice);
    EXPECT_EQ(given.command.config.tool_call_parser, "deepseek_v3");
  }
  ParsedCommandLine defaults = parse_command_line({"troupe", "serve"});
  EXPECT_FALSE(defaults.command.config.enable_auto_tool_choice);
  EXPECT_EQ(defaults.command.config.tool_call_parser, "");
  EXPECT_EQ(parse_command_line({"troupe", "serve", "--tool-call-parser", "mistral"}).exit_code, 2);
  EXPECT_EQ(parse_command_line({"troupe", "serve", "--enable-auto-tool-choice"}).exit_code, 2);
  // Config file keys are the long flag names.
  const std::string path = ::testing::TempDir() + "/tool_flags.toml";
  std::ofstream(path) << "enable-auto-tool-choice = true\ntool-call-parser = \"hermes\"\n";
  ParsedCommandLine from_file = parse_command_line({"troupe", "serve", "--config", path});
  ASSERT_FALSE(from_file.exit_code);
  EXPECT_TRUE(from_file.command.config.enable_auto_tool_choice);
  EXPECT_EQ(from_file.command.config.tool_call_parser, "hermes");
}

// A worker's own --gpu-memory-utilization (flag or config file) sizes its stages' KV cache; without
// it the head's value does (worker_gpu_memory_utilization 0). Values outside (0, 1] are refused.
TEST(CommandLineFlags, WorkerGpuMemoryUtilizationIsItsOwnWhenGiven) {
  ParsedCommandLine absent = parse_command_line({"troupe", "worker"});
  ASSERT_FALSE(absent.exit_code);
  EXPECT_EQ(absent.command.config.worker_gpu_memory_utilization, 0);
  ParsedCommandLine given = parse_command_line({"troupe", "worker", "--gpu-memory-utilization", "0.6"});
  ASSERT_FALSE(given.exit_code);
  EXPECT_EQ(given.command.config.worker_gpu_memory_utilization, 0.6);
  const std::string path = ::testing::TempDir() + "/worker_gpu_memory.toml";
  std::ofstream(path) << "gpu-memory-utilization = 0.75\n";
  ParsedCommandLine from_file = parse_command_line({"troupe", "worker", "--config", path});
  ASSERT_FALSE(from_file.exit_code);
  EXPECT_EQ(from_file.command.config.worker_gpu_memory_utilization, 0.75);
  // The head's flag is the head's: only a worker has an own value.
  ParsedCommandLine head = parse_command_line({"troupe", "head", "--gpu-memory-utilization", "0.6"});
  ASSERT_FALSE(head.exit_code);
  EXPECT_EQ(head.command.config.gpu_memory_utilization, 0.6);
  EXPECT_EQ(head.command.config.worker_gpu_memory_utilization, 0);
  for (const char* bad : {"0", "-0.5", "1.01", "90"})
    for (const char* sub : {"worker", "head", "serve"})
      EXPECT_EQ(parse_command_line({"troupe", sub, "--gpu-memory-utilization", bad}).exit_code, 2) << sub << " " << bad;
  Config config;
  config.worker_gpu_memory_utilization = 1.5;
  ASSERT_FALSE(config.validate().ok());
  EXPECT_EQ(config.validate().error().message,
            "--gpu-memory-utilization: must be in (0, 1], a fraction of the GPU's memory, got 1.5");
}

}  // namespace
}  // namespace troupe::cli

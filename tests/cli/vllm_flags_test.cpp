// `vllm serve` command lines parsed by troupe: positional model, -tp/-pp, several served names,
// the drop-in serving flags, ignored flags (warnings) and refused ones (errors).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/command_line.hpp"
#include "cli/vllm_flags.hpp"

namespace troupe::cli {
namespace {

ParsedCommandLine parse(std::vector<std::string> args) {
  args.insert(args.begin(), "troupe");
  return parse_command_line(args);
}

TEST(VllmFlags, PositionalModelTpAndSeveralServedNames) {
  ParsedCommandLine p = parse({"serve", "/models/r1", "-tp", "1", "--served-model-name", "a", "b"});
  ASSERT_FALSE(p.exit_code) << "parse failed";
  const Config& c = p.command.config;
  EXPECT_EQ(p.command.subcommand, Subcommand::serve);
  EXPECT_EQ(c.model, "/models/r1");
  EXPECT_EQ(c.tensor_parallel_size, 1);
  EXPECT_EQ(c.served_model_name, "a");
  EXPECT_EQ(c.served_model_names, (std::vector<std::string>{"a", "b"}));
}

TEST(VllmFlags, ShortParallelSpellings) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"serve", "m", "-tp", "4", "-pp", "2"},
                                                                {"serve", "m", "-tp=4", "-pp=2"},
                                                                {"serve", "m", "-tp4", "-pp2"},
                                                                {"serve", "--model", "m", "--tp", "4", "--pp", "2"}}) {
    ParsedCommandLine p = parse(args);
    ASSERT_FALSE(p.exit_code) << args[2];
    EXPECT_EQ(p.command.config.tensor_parallel_size, 4);
    EXPECT_EQ(p.command.config.pipeline_parallel_size, 2);
  }
  // A value that is not a number stays an error.
  EXPECT_TRUE(parse({"serve", "m", "-tp", "x"}).exit_code);
  // Several --served-model-name occurrences (a --config file's comes first): the last one wins.
  EXPECT_EQ(normalize_vllm_args({"troupe", "serve", "--served-model-name=file", "--served-model-name", "a", "b", "m"}),
            (std::vector<std::string>{"troupe", "serve", "--served-model-name", "a", "b", "m"}));
  EXPECT_EQ(normalize_vllm_args({"troupe", "serve", "--served-model-name", "x", "y", "--port", "1",
                                 "--served-model-name=z"}),
            (std::vector<std::string>{"troupe", "serve", "--port", "1", "--served-model-name=z"}));
  // Other args are left alone.
  EXPECT_EQ(normalize_vllm_args({"troupe", "-tpx", "--tp", "-pp"}),
            (std::vector<std::string>{"troupe", "-tpx", "--tp", "--pipeline-parallel-size"}));
}

TEST(VllmFlags, ServingFlagsReachTheConfig) {
  ParsedCommandLine p = parse({"serve", "m", "--chat-template", "t.jinja", "--generation-config", "vllm",
                               "--override-generation-config", "{\"temperature\": 0.5}", "--seed", "42",
                               "--disable-log-requests"});
  ASSERT_FALSE(p.exit_code);
  const Config& c = p.command.config;
  EXPECT_EQ(c.chat_template, "t.jinja");
  EXPECT_EQ(c.generation_config, "vllm");
  EXPECT_EQ(c.override_generation_config, "{\"temperature\": 0.5}");
  EXPECT_EQ(c.default_request_seed, 42);
  EXPECT_TRUE(c.disable_log_requests);
  EXPECT_FALSE(parse({"serve", "m", "--enable-log-requests"}).command.config.disable_log_requests);
  EXPECT_EQ(parse({"serve", "m"}).command.config.default_request_seed, -1);
  // head takes them too.
  ParsedCommandLine head = parse({"head", "--model", "m", "--served-model-name", "x", "y", "z"});
  ASSERT_FALSE(head.exit_code);
  EXPECT_EQ(head.command.config.served_model_names.size(), 3u);
}

TEST(VllmFlags, HarmlessFlagsWarnAndChangingFlagsAreRefused) {
  ParsedCommandLine p = parse({"serve", "m", "--trust-remote-code", "--disable-log-stats", "--swap-space", "4"});
  ASSERT_FALSE(p.exit_code);
  ASSERT_EQ(p.command.warnings.size(), 3u);
  EXPECT_NE(p.command.warnings[0].find("--trust-remote-code"), std::string::npos);
  EXPECT_EQ(parse({"serve", "m", "--quantization", "awq"}).exit_code, 2);
  EXPECT_EQ(parse({"serve", "m", "-dp", "2"}).exit_code, 2);
  // Their default spellings pass.
  EXPECT_FALSE(parse({"serve", "m", "--data-parallel-size", "1"}).exit_code);
  // A flag nobody knows is still an error.
  EXPECT_EQ(parse({"serve", "m", "--no-such-flag"}).exit_code, 2);
}

TEST(VllmFlags, KvCacheDtypeTakesAutoAndFp8AndRefusesTheRest) {
  for (const char* value : {"auto", "fp8", "fp8_e4m3"}) {
    ParsedCommandLine p = parse({"serve", "m", "--kv-cache-dtype", value});
    ASSERT_FALSE(p.exit_code) << value;
    EXPECT_EQ(p.command.config.kv_cache_dtype, value);
  }
  EXPECT_TRUE(parse({"serve", "m", "--kv-cache-dtype", "fp8"}).command.config.fp8_kv_cache());
  EXPECT_EQ(parse({"serve", "m"}).command.config.kv_cache_dtype, "auto");
  EXPECT_EQ(parse({"serve", "m", "--kv-cache-dtype", "fp9"}).exit_code, 2);
  EXPECT_EQ(parse({"generate", "--model", "m", "--kv-cache-dtype", "fp8_e5m2"}).exit_code, 2);
}

TEST(VllmFlags, All2AllBackendTakesTroupesTwoModesAndNamesWhatIsNotBuilt) {
  EXPECT_EQ(parse({"serve", "m"}).command.config.all2all_backend, "allgather_reducescatter");
  for (const char* value : {"allgather_reducescatter", "all_to_all"}) {
    ParsedCommandLine p = parse({"serve", "m", "-tp", "2", "--all2all-backend", value});
    ASSERT_FALSE(p.exit_code) << value;
    EXPECT_EQ(p.command.config.all2all_backend, value);
  }
  for (const char* value : {"deepep_low_latency", "pplx", "naive"})
    EXPECT_EQ(parse({"serve", "m", "--all2all-backend", value}).exit_code, 2) << value;
  // Expert parallel is how troupe splits routed experts anyway: vLLM's switch only warns.
  ParsedCommandLine p = parse({"serve", "m", "-tp", "2", "--enable-expert-parallel"});
  EXPECT_FALSE(p.exit_code);
  ASSERT_EQ(p.command.warnings.size(), 1u);
  EXPECT_NE(p.command.warnings[0].find("--enable-expert-parallel"), std::string::npos);
}

}  // namespace
}  // namespace troupe::cli

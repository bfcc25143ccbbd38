#include <gtest/gtest.h>

#include "runtime/config.hpp"

namespace troupe {
namespace {

TEST(Config, DefaultsAreValid) { EXPECT_TRUE(Config{}.validate().ok()); }

TEST(Config, RejectsEachBadValueNamingTheFlag) {
  struct Case {
    void (*mutate)(Config&);
    const char* flag;
  };
  const Case cases[] = {
      {[](Config& c) { c.http_port = 0; }, "--port"},
      {[](Config& c) { c.http_port = 70000; }, "--port"},
      {[](Config& c) { c.block_size = 12; }, "--block-size"},
      {[](Config& c) { c.gpu_memory_utilization = 1.5; }, "--gpu-memory-utilization"},
      {[](Config& c) { c.max_num_seqs = 0; }, "--max-num-seqs"},
      {[](Config& c) { c.load_format = "pt"; }, "--load-format"},
      {[](Config& c) { c.device = "tpu"; }, "--device"},
      {[](Config& c) { c.dtype = "float8"; }, "--dtype"},
      {[](Config& c) { c.join = "nohostport"; }, "--join"},
      {[](Config& c) { c.log_level = "loud"; }, "--log-level"},
      {[](Config& c) { c.reasoning_parser = "qwq"; }, "--reasoning-parser"},
      {[](Config& c) { c.tool_call_parser = "mistral"; }, "--tool-call-parser"},
      {[](Config& c) { c.enable_auto_tool_choice = true; }, "--enable-auto-tool-choice"},
      {[](Config& c) { c.tensor_parallel_size = 0; }, "--tensor-parallel-size"},
  };
  for (const auto& c : cases) {
    Config config;
    c.mutate(config);
    Status status = config.validate();
    ASSERT_FALSE(status.ok()) << c.flag;
    EXPECT_EQ(status.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(status.error().message.find(c.flag), std::string::npos) << status.error().message;
  }
}

}  // namespace
}  // namespace troupe

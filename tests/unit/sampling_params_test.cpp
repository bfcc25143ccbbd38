#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/sampling_params.hpp"

namespace troupe {
namespace {

TEST(SamplingParams, DefaultsAreValid) { EXPECT_TRUE(SamplingParams{}.validate().ok()); }

TEST(SamplingParams, AcceptsEdgeValues) {
  SamplingParams p;
  p.temperature = 0.0;
  p.top_p = 1.0;
  p.top_k = 0;
  p.min_p = 1.0;
  p.presence_penalty = -2.0;
  p.frequency_penalty = 2.0;
  p.max_tokens = 1;
  p.logprobs = 20;
  p.seed = 0;
  EXPECT_TRUE(p.validate().ok());
  p.temperature = 5.0;  // OpenAI caps at 2, vLLM does not; only finiteness is required
  p.top_k = 1;
  p.logprobs = 0;
  EXPECT_TRUE(p.validate().ok());
}

TEST(SamplingParams, RejectsEachBadValueNamingTheParameter) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    void (*mutate)(SamplingParams&, double, double);
    const char* name;
  };
  const Case cases[] = {
      {[](SamplingParams& p, double, double) { p.temperature = -0.1; }, "temperature"},
      {[](SamplingParams& p, double i, double) { p.temperature = i; }, "temperature"},
      {[](SamplingParams& p, double, double n) { p.temperature = n; }, "temperature"},
      {[](SamplingParams& p, double, double) { p.top_p = 0.0; }, "top_p"},
      {[](SamplingParams& p, double, double) { p.top_p = 1.01; }, "top_p"},
      {[](SamplingParams& p, double, double n) { p.top_p = n; }, "top_p"},
      {[](SamplingParams& p, double, double) { p.top_k = -2; }, "top_k"},
      {[](SamplingParams& p, double, double) { p.min_p = -0.01; }, "min_p"},
      {[](SamplingParams& p, double, double) { p.min_p = 1.5; }, "min_p"},
      {[](SamplingParams& p, double, double) { p.repetition_penalty = 0.0; }, "repetition_penalty"},
      {[](SamplingParams& p, double, double) { p.repetition_penalty = -1.0; }, "repetition_penalty"},
      {[](SamplingParams& p, double i, double) { p.repetition_penalty = i; }, "repetition_penalty"},
      {[](SamplingParams& p, double, double) { p.presence_penalty = 2.5; }, "presence_penalty"},
      {[](SamplingParams& p, double, double) { p.presence_penalty = -2.01; }, "presence_penalty"},
      {[](SamplingParams& p, double, double) { p.frequency_penalty = -3.0; }, "frequency_penalty"},
      {[](SamplingParams& p, double, double n) { p.frequency_penalty = n; }, "frequency_penalty"},
      {[](SamplingParams& p, double, double) { p.max_tokens = 0; }, "max_tokens"},
      {[](SamplingParams& p, double, double) { p.logprobs = 21; }, "logprobs"},
      {[](SamplingParams& p, double, double) { p.logprobs = -2; }, "logprobs"},
      {[](SamplingParams& p, double, double) { p.stop_token_ids = {5, -1}; }, "stop_token_ids"},
  };
  for (const auto& c : cases) {
    SamplingParams p;
    c.mutate(p, inf, nan);
    Status status = p.validate();
    ASSERT_FALSE(status.ok()) << c.name;
    EXPECT_EQ(status.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(status.error().message.rfind(c.name, 0), 0u) << status.error().message;
  }
}

}  // namespace
}  // namespace troupe

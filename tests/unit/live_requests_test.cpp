// The head's book of live requests counts what its groups report: tokens, and the prefix cache's
// queries and hits once per request when it ends.
#include <gtest/gtest.h>

#include "cluster/live_requests.hpp"

namespace troupe::cluster {
namespace {

TEST(LiveRequests, CountsPrefixCacheHitsOncePerFinishedRequest) {
  LiveRequests live;
  int calls = 0;
  ASSERT_TRUE(live.add("a", 40, [&](const GenerationOutput&) { ++calls; }).ok());
  GenerationOutput first;
  first.new_token_ids = {7};
  first.num_prompt_tokens = 40;
  first.num_cached_tokens = 32;
  live.deliver("a", first);
  EXPECT_EQ(live.stats().num_prefix_cache_queries_total, 0);
  GenerationOutput last = first;
  last.finish_reason = FinishReason::length;
  live.deliver("a", last);
  live.deliver("a", last);  // no longer live: ignored
  EXPECT_EQ(calls, 2);
  const EngineStats stats = live.stats();
  EXPECT_EQ(stats.num_prompt_tokens_total, 40);
  EXPECT_EQ(stats.num_generation_tokens_total, 2);
  EXPECT_EQ(stats.num_prefix_cache_queries_total, 40);
  EXPECT_EQ(stats.num_prefix_cache_hits_total, 32);
}

}  // namespace
}  // namespace troupe::cluster

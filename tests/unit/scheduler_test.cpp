#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <set>

#include "engine/scheduler.hpp"

namespace troupe {
namespace {

constexpr int32_t kEos = 2;

SchedulerConfig make_config(int64_t num_blocks, int64_t block_size, int64_t budget, int64_t max_seqs = 8) {
  SchedulerConfig c;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.eos_token_ids = {kEos};
  return c;
}

Sequence make_seq(const std::string& id, int64_t prompt_len, int64_t max_tokens, int32_t first = 100) {
  std::vector<int32_t> prompt;
  for (int64_t i = 0; i < prompt_len; ++i) prompt.push_back(first + static_cast<int32_t>(i % 50));
  SamplingParams p;
  p.max_tokens = max_tokens;
  return Sequence(id, std::move(prompt), p);
}

// Deterministic fake model: the next token depends only on the sequence's tokens; never EOS unless
// eos_every > 0 and the hash says so.
int32_t fake_next(const Sequence& seq, int eos_every = 0) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < seq.num_tokens(); ++i) h = (h ^ static_cast<uint64_t>(seq.token_at(i))) * 1099511628211ull;
  if (eos_every > 0 && h % eos_every == 0) return kEos;
  return 10 + static_cast<int32_t>(h % 1000);
}

std::vector<int32_t> fake_sample(const ScheduledBatch& batch, int eos_every = 0) {
  std::vector<int32_t> out;
  for (const auto& e : batch.entries)
    if (e.produces_token) out.push_back(fake_next(*e.seq, eos_every));
  return out;
}

// One engine step with the fake model; returns the finished sequences.
std::vector<std::unique_ptr<Sequence>> step(Scheduler& s, ScheduledBatch& batch, int eos_every = 0) {
  batch = s.schedule();
  EXPECT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
  auto done = s.postprocess(batch, fake_sample(batch, eos_every));
  EXPECT_TRUE(done.ok()) << done.error().message;
  EXPECT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
  for (auto& f : batch.finished) done->push_back(std::move(f));
  return std::move(done.value());
}

TEST(Scheduler, MixesPrefillAndDecodeInOneStep) {
  Scheduler s(make_config(100, 4, 64));
  ASSERT_TRUE(s.add(make_seq("a", 10, 5)).ok());
  ScheduledBatch batch;
  step(s, batch);
  ASSERT_EQ(batch.entries.size(), 1u);
  EXPECT_EQ(batch.entries[0].num_new_tokens, 10);
  EXPECT_TRUE(batch.entries[0].produces_token);
  ASSERT_TRUE(s.add(make_seq("b", 20, 5, 300)).ok());  // shares no prefix with a
  step(s, batch);
  ASSERT_EQ(batch.entries.size(), 2u);
  EXPECT_EQ(batch.entries[0].seq->request_id, "a");
  EXPECT_EQ(batch.entries[0].start_position, 10);
  EXPECT_EQ(batch.entries[0].num_new_tokens, 1);
  EXPECT_EQ(batch.entries[1].seq->request_id, "b");
  EXPECT_EQ(batch.entries[1].start_position, 0);
  EXPECT_EQ(batch.entries[1].num_new_tokens, 20);
  EXPECT_EQ(batch.num_batched_tokens, 21);
  EXPECT_EQ(s.find("a")->num_output_tokens(), 2);
}

TEST(Scheduler, ChunksLongPromptsWithinTheTokenBudget) {
  Scheduler s(make_config(100, 4, 16));
  ASSERT_TRUE(s.add(make_seq("long", 40, 3)).ok());
  ASSERT_TRUE(s.add(make_seq("short", 5, 3, 300)).ok());
  ScheduledBatch batch;
  step(s, batch);
  ASSERT_EQ(batch.entries.size(), 1u);  // the budget went to the first chunk
  EXPECT_EQ(batch.entries[0].num_new_tokens, 16);
  EXPECT_FALSE(batch.entries[0].produces_token);
  EXPECT_EQ(s.find("long")->num_output_tokens(), 0);
  step(s, batch);
  EXPECT_EQ(batch.entries[0].start_position, 16);
  EXPECT_EQ(batch.num_batched_tokens, 16);
  step(s, batch);
  ASSERT_EQ(batch.entries.size(), 2u);  // last chunk of 8 + the short prompt
  EXPECT_EQ(batch.entries[0].num_new_tokens, 8);
  EXPECT_TRUE(batch.entries[0].produces_token);
  EXPECT_EQ(batch.entries[1].num_new_tokens, 5);
  EXPECT_EQ(s.find("long")->num_output_tokens(), 1);
  EXPECT_EQ(s.find("short")->num_output_tokens(), 1);
}

TEST(Scheduler, RespectsMaxNumSeqs) {
  Scheduler s(make_config(100, 4, 1000, 2));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.add(make_seq("r" + std::to_string(i), 3, 4)).ok());
  ScheduledBatch batch;
  step(s, batch);
  EXPECT_EQ(batch.entries.size(), 2u);
  EXPECT_EQ(s.num_running(), 2);
  EXPECT_EQ(s.num_waiting(), 2);
}

TEST(Scheduler, PreemptsTheNewestAndFinishesItLater) {
  Scheduler s(make_config(4, 4, 64));  // 16 token slots
  ASSERT_TRUE(s.add(make_seq("old", 7, 6)).ok());
  ASSERT_TRUE(s.add(make_seq("new", 7, 6)).ok());
  ScheduledBatch batch;
  step(s, batch);  // both prefill: 2 + 2 blocks, 8 tokens each after sampling
  EXPECT_EQ(s.block_manager().num_free_blocks(), 0);
  step(s, batch);  // decode position 7 fits in block 1
  EXPECT_TRUE(batch.preempted.empty());
  step(s, batch);  // decode position 8 needs a third block: "new" goes
  ASSERT_EQ(batch.preempted.size(), 1u);
  EXPECT_EQ(batch.preempted[0]->request_id, "new");
  ASSERT_EQ(batch.entries.size(), 1u);
  EXPECT_EQ(batch.entries[0].seq->request_id, "old");
  const Sequence* preempted = s.find("new");
  EXPECT_EQ(preempted->status, SequenceStatus::waiting);
  EXPECT_EQ(preempted->num_computed_tokens, 0);
  EXPECT_EQ(preempted->num_output_tokens(), 2);
  EXPECT_EQ(s.num_preemptions_total(), 1);
  std::map<std::string, std::unique_ptr<Sequence>> done;
  for (int i = 0; i < 50 && s.has_unfinished(); ++i)
    for (auto& f : step(s, batch)) done[f->request_id] = std::move(f);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
  for (auto& [id, seq] : done) {
    EXPECT_EQ(seq->finish_reason, FinishReason::length) << id;
    EXPECT_EQ(seq->num_output_tokens(), 6) << id;
    // The recompute gives the same tokens as an uninterrupted run of the fake model.
    Sequence replay = make_seq(id, 7, 6);
    for (int k = 0; k < 6; ++k) replay.output_ids.push_back(fake_next(replay));
    EXPECT_EQ(seq->output_ids, replay.output_ids) << id;
  }
  EXPECT_EQ(done["new"]->num_preemptions, 1);
}

TEST(Scheduler, StopConditionsFreeBlocksAtOnce) {
  Scheduler s(make_config(20, 4, 64));
  Sequence eos = make_seq("eos", 5, 10);
  Sequence stop = make_seq("stop", 5, 10, 200);
  Sequence ignore = make_seq("ignore", 5, 2, 300);
  ignore.params.ignore_eos = true;
  ASSERT_TRUE(s.add(std::move(eos)).ok());
  ASSERT_TRUE(s.add(std::move(stop)).ok());
  ASSERT_TRUE(s.add(std::move(ignore)).ok());
  s.find("stop")->params.stop_token_ids = {77};
  ScheduledBatch batch = s.schedule();
  ASSERT_EQ(batch.entries.size(), 3u);
  auto done = s.postprocess(batch, {kEos, 77, kEos});
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->size(), 2u);
  EXPECT_EQ((*done)[0]->finish_reason, FinishReason::stop);
  EXPECT_EQ((*done)[1]->finish_reason, FinishReason::stop);
  EXPECT_EQ((*done)[1]->output_ids, std::vector<int32_t>{77});
  EXPECT_EQ(s.block_manager().num_used_blocks(), 2);  // "ignore" only
  batch = s.schedule();
  done = s.postprocess(batch, {kEos});
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->size(), 1u);
  EXPECT_EQ((*done)[0]->finish_reason, FinishReason::length);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
  EXPECT_FALSE(s.has_unfinished());
}

TEST(Scheduler, AbortFreesBlocksAtOnce) {
  Scheduler s(make_config(20, 4, 64, 1));
  ASSERT_TRUE(s.add(make_seq("run", 9, 10)).ok());
  ASSERT_TRUE(s.add(make_seq("wait", 9, 10)).ok());
  ScheduledBatch batch;
  step(s, batch);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 3);
  auto aborted = s.abort("run");
  ASSERT_NE(aborted, nullptr);
  EXPECT_EQ(aborted->finish_reason, FinishReason::abort);
  EXPECT_EQ(aborted->status, SequenceStatus::finished);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
  EXPECT_EQ(s.abort("run"), nullptr);
  EXPECT_EQ(s.abort("nobody"), nullptr);
  ASSERT_NE(s.abort("wait"), nullptr);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_TRUE(s.check_invariants().ok());
  // An abort between schedule() and postprocess() drops that entry's token.
  ASSERT_TRUE(s.add(make_seq("late", 3, 10)).ok());
  batch = s.schedule();
  ASSERT_NE(s.abort("late"), nullptr);
  auto done = s.postprocess(batch, {11});
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->empty());
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
}

TEST(Scheduler, RejectsBadRequests) {
  SchedulerConfig config = make_config(2, 4, 64);
  config.max_model_len = 6;
  Scheduler s(config);
  auto too_long = s.add(make_seq("big", 7, 1));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(too_long.error().message.find("max_model_len"), std::string::npos);
  Scheduler small(make_config(2, 4, 64));
  auto over_cache = small.add(make_seq("big", 9, 1));
  ASSERT_FALSE(over_cache.ok());
  EXPECT_NE(over_cache.error().message.find("KV cache"), std::string::npos) << over_cache.error().message;
  EXPECT_FALSE(small.add(make_seq("empty", 0, 1)).ok());
  Sequence bad = make_seq("bad", 3, 1);
  bad.params.top_p = 0.0;
  auto bad_params = small.add(std::move(bad));
  ASSERT_FALSE(bad_params.ok());
  EXPECT_NE(bad_params.error().message.find("top_p"), std::string::npos);
  ASSERT_TRUE(small.add(make_seq("x", 3, 1)).ok());
  EXPECT_FALSE(small.add(make_seq("x", 3, 1)).ok());  // duplicate live id
  ScheduledBatch batch = small.schedule();
  EXPECT_FALSE(small.postprocess(batch, {}).ok());
  EXPECT_FALSE(small.postprocess(batch, {-5}).ok());
  EXPECT_TRUE(small.postprocess(batch, {11}).ok());
  SchedulerConfig zero = make_config(2, 4, 0);
  EXPECT_FALSE(zero.validate().ok());
}

TEST(Scheduler, OutgrowingTheWholeCacheEndsWithLengthNotAHang) {
  Scheduler s(make_config(2, 4, 64));  // 8 token slots
  ASSERT_TRUE(s.add(make_seq("grow", 6, 100)).ok());
  ScheduledBatch batch;
  std::vector<std::unique_ptr<Sequence>> done;
  for (int i = 0; i < 20 && s.has_unfinished(); ++i)
    for (auto& f : step(s, batch)) done.push_back(std::move(f));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]->finish_reason, FinishReason::length);
  EXPECT_EQ(done[0]->num_tokens(), 9);  // KV for 8 positions, plus the last sampled token
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);

  SchedulerConfig capped = make_config(100, 4, 64);
  capped.max_model_len = 10;
  Scheduler t(capped);
  ASSERT_TRUE(t.add(make_seq("cap", 6, 100)).ok());
  done.clear();
  for (int i = 0; i < 20 && t.has_unfinished(); ++i)
    for (auto& f : step(t, batch)) done.push_back(std::move(f));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]->finish_reason, FinishReason::length);
  EXPECT_EQ(done[0]->num_tokens(), 10);
}

// Randomized bounded simulation: arrivals, EOS, aborts and preemptions under a tight cache.
TEST(Scheduler, RandomizedSimulationKeepsInvariants) {
  int64_t num_preemptions = 0, num_hits = 0;
  for (uint64_t trial = 0; trial < 6; ++trial) {
    std::mt19937_64 gen(trial);
    auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen); };
    const int64_t block_size = int64_t{1} << uniform(0, 3);
    const int64_t num_blocks = uniform(6, 40);
    const int64_t budget = uniform(4, 64);
    Scheduler s(make_config(num_blocks, block_size, budget, uniform(1, 8)));
    const int64_t capacity = num_blocks * block_size;
    // What the model would find in the paged cache: the token whose KV each slot holds.
    std::vector<int32_t> kv(capacity, -1);
    int64_t num_added = 0, num_done = 0;
    std::set<std::string> live;
    for (int step_no = 0; step_no < 5000; ++step_no) {  // arrivals for 300 steps, then drain
      if (step_no < 300 && uniform(0, 2) == 0) {
        const std::string id = "t" + std::to_string(trial) + "-" + std::to_string(num_added);
        Sequence seq = make_seq(id, uniform(1, std::min<int64_t>(capacity, 40)), uniform(1, 25),
                                static_cast<int32_t>(uniform(100, 900)));
        ASSERT_TRUE(s.add(std::move(seq)).ok());
        live.insert(id);
        ++num_added;
      }
      if (!live.empty() && uniform(0, 15) == 0) {
        auto it = std::next(live.begin(), uniform(0, static_cast<int64_t>(live.size()) - 1));
        ASSERT_NE(s.abort(*it), nullptr);
        live.erase(it);
        ++num_done;
      }
      ScheduledBatch batch = s.schedule();
      ASSERT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
      ASSERT_LE(batch.num_batched_tokens, budget);
      std::set<int64_t> ids;
      int64_t sum = 0;
      for (const auto& e : batch.entries) {
        ASSERT_TRUE(ids.insert(e.seq_id).second) << "sequence scheduled twice";
        ASSERT_GE(e.num_new_tokens, 1);
        // The block table covers exactly what this step writes.
        ASSERT_EQ(s.block_manager().num_tokens(e.seq_id), e.start_position + e.num_new_tokens);
        ASSERT_GE(static_cast<int64_t>(s.block_manager().block_table(e.seq_id).size()) * block_size,
                  e.start_position + e.num_new_tokens);
        // Every position before the chunk (computed, or a prefix-cache hit) holds this sequence's
        // token; the chunk writes its own.
        const auto& table = s.block_manager().block_table(e.seq_id);
        for (int64_t pos = 0; pos < e.start_position + e.num_new_tokens; ++pos) {
          int32_t& slot = kv[table[pos / block_size] * block_size + pos % block_size];
          if (pos < e.start_position) {
            ASSERT_EQ(slot, e.seq->token_at(pos)) << "stale KV at position " << pos << " of " << e.seq->request_id;
          } else {
            slot = e.seq->token_at(pos);
          }
        }
        sum += e.num_new_tokens;
      }
      ASSERT_EQ(sum, batch.num_batched_tokens);
      if (s.has_unfinished()) {
        ASSERT_TRUE(!batch.empty() || !batch.finished.empty()) << "stalled at step " << step_no;
      }
      auto done = s.postprocess(batch, fake_sample(batch, 23));
      ASSERT_TRUE(done.ok()) << done.error().message;
      ASSERT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
      for (auto& f : batch.finished) done->push_back(std::move(f));
      for (auto& f : *done) {
        ASSERT_EQ(live.erase(f->request_id), 1u);
        ++num_done;
        // Tokens match an uninterrupted run, whatever preemptions happened.
        Sequence replay(f->request_id, f->prompt_ids, f->params);
        for (int64_t k = 0; k < f->num_output_tokens(); ++k) replay.output_ids.push_back(fake_next(replay, 23));
        ASSERT_EQ(f->output_ids, replay.output_ids);
        if (f->finish_reason == FinishReason::stop) {
          ASSERT_EQ(f->output_ids.back(), kEos);
        } else {
          ASSERT_EQ(f->finish_reason, FinishReason::length);
          ASSERT_TRUE(f->num_output_tokens() == f->params.max_tokens || f->num_tokens() == capacity + 1);
        }
      }
      if (step_no >= 300 && !s.has_unfinished()) break;
    }
    EXPECT_FALSE(s.has_unfinished()) << "trial " << trial << " did not drain";
    EXPECT_EQ(num_done, num_added);
    EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
    num_preemptions += s.num_preemptions_total();
    num_hits += s.num_prefix_cache_hits_total();
  }
  EXPECT_GT(num_preemptions, 0) << "the simulation never exercised preemption";
  EXPECT_GT(num_hits, 0) << "the simulation never hit the prefix cache";
}

// Chunked prefill under decode load: a long prompt arriving while 8 streams decode is cut into
// chunks of what their decode tokens leave of the budget; every step stays within the budget and
// every decoding sequence gets its token every step until the prompt is done.
TEST(Scheduler, DecodesRunEveryStepWhileALongPromptIsChunked) {
  const int64_t budget = 24;
  Scheduler s(make_config(400, 4, budget, 16));
  for (int k = 0; k < 8; ++k) ASSERT_TRUE(s.add(make_seq("d" + std::to_string(k), 3, 200, 100 + 10 * k)).ok());
  ScheduledBatch batch;
  step(s, batch);  // the 8 prompts (24 tokens)
  ASSERT_TRUE(s.add(make_seq("long", 600, 2, 300)).ok());
  int64_t num_chunks = 0, num_prompt_done = 0;
  while (s.find("long") && s.find("long")->num_output_tokens() == 0) {
    std::set<int64_t> decoding;
    for (int k = 0; k < 8; ++k)
      if (Sequence* seq = s.find("d" + std::to_string(k)); seq && !seq->is_prefill()) decoding.insert(seq->id);
    ASSERT_EQ(decoding.size(), 8u);
    batch = s.schedule();
    ASSERT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
    ASSERT_LE(batch.num_batched_tokens, budget);
    int64_t sum = 0, long_chunk = 0;
    for (const auto& e : batch.entries) {
      sum += e.num_new_tokens;
      decoding.erase(e.seq_id);
      if (e.seq->request_id == "long") long_chunk = e.num_new_tokens;
    }
    ASSERT_EQ(sum, batch.num_batched_tokens);
    EXPECT_TRUE(decoding.empty()) << decoding.size() << " decoding sequences left out of step " << num_chunks;
    EXPECT_EQ(long_chunk, std::min<int64_t>(budget - 8, 600 - num_prompt_done)) << "chunk " << num_chunks;
    num_prompt_done += long_chunk;
    ++num_chunks;
    auto done = s.postprocess(batch, fake_sample(batch));
    ASSERT_TRUE(done.ok());
    ASSERT_LT(num_chunks, 200) << "the prompt never finished";
  }
  EXPECT_EQ(num_chunks, (600 + budget - 9) / (budget - 8));
}

// Two batches in flight at once (a two-stage pipeline's engine): each batch takes at most half
// the live sequences, the batches in flight never share a sequence, a sequence in flight is never
// preempted, a batch reads only KV written by steps scheduled before it, and every finished
// sequence's tokens match an uninterrupted run; aborts wait until a sequence is out of flight.
TEST(Scheduler, BatchesInFlightHoldDifferentSequences) {
  int64_t num_preemptions = 0, num_both_busy = 0;
  for (uint64_t trial = 0; trial < 6; ++trial) {
    std::mt19937_64 gen(100 + trial);
    auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen); };
    const int64_t block_size = int64_t{1} << uniform(0, 3);
    const int64_t num_blocks = uniform(8, 40);
    const int64_t budget = uniform(4, 64);
    Scheduler s(make_config(num_blocks, block_size, budget, uniform(2, 8)));
    const int64_t capacity = num_blocks * block_size;
    std::vector<int32_t> kv(capacity, -1);
    std::deque<ScheduledBatch> in_flight;
    int64_t num_added = 0, num_done = 0;
    std::set<std::string> live;
    for (int step_no = 0; step_no < 8000; ++step_no) {
      if (step_no < 300 && uniform(0, 2) == 0) {
        const std::string id = "f" + std::to_string(trial) + "-" + std::to_string(num_added++);
        ASSERT_TRUE(s.add(make_seq(id, uniform(1, std::min<int64_t>(capacity, 40)), uniform(1, 25),
                                   static_cast<int32_t>(uniform(100, 900))))
                        .ok());
        live.insert(id);
      }
      if (!live.empty() && uniform(0, 15) == 0) {
        auto it = std::next(live.begin(), uniform(0, static_cast<int64_t>(live.size()) - 1));
        if (!s.is_in_flight(*it)) {
          ASSERT_NE(s.abort(*it), nullptr);
          live.erase(it);
          ++num_done;
        }
      }
      // Fill: up to two batches, each at most half the live sequences.
      while (in_flight.size() < 2) {
        const int64_t cap = std::max<int64_t>(1, (s.num_running() + s.num_waiting() + 1) / 2);
        std::set<int64_t> busy;
        for (const auto& b : in_flight)
          for (const auto& e : b.entries) busy.insert(e.seq_id);
        ScheduledBatch batch = s.schedule(cap);
        ASSERT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
        ASSERT_LE(int64_t(batch.entries.size()), cap);
        ASSERT_LE(batch.num_batched_tokens, budget);
        for (const Sequence* p : batch.preempted) ASSERT_EQ(busy.count(p->id), 0u) << "preempted in flight";
        for (const auto& e : batch.entries) {
          ASSERT_TRUE(busy.insert(e.seq_id).second) << "sequence in two batches in flight";
          const auto& table = s.block_manager().block_table(e.seq_id);
          for (int64_t pos = 0; pos < e.start_position + e.num_new_tokens; ++pos) {
            int32_t& slot = kv[table[pos / block_size] * block_size + pos % block_size];
            if (pos < e.start_position) {
              ASSERT_EQ(slot, e.seq->token_at(pos)) << "stale KV at position " << pos << " of " << e.seq->request_id;
            } else {
              slot = e.seq->token_at(pos);
            }
          }
        }
        for (auto& f : batch.finished) {
          ASSERT_EQ(live.erase(f->request_id), 1u);
          ++num_done;
        }
        if (batch.empty()) break;
        in_flight.push_back(std::move(batch));
      }
      if (in_flight.size() == 2) ++num_both_busy;
      if (in_flight.empty()) {
        ASSERT_FALSE(s.has_unfinished() && step_no >= 300) << "stalled at step " << step_no;
        if (step_no >= 300) break;
        continue;
      }
      ScheduledBatch batch = std::move(in_flight.front());
      in_flight.pop_front();
      auto done = s.postprocess(batch, fake_sample(batch, 23));
      ASSERT_TRUE(done.ok()) << done.error().message;
      ASSERT_TRUE(s.check_invariants().ok()) << s.check_invariants().error().message;
      for (auto& f : *done) {
        ASSERT_EQ(live.erase(f->request_id), 1u);
        ++num_done;
        Sequence replay(f->request_id, f->prompt_ids, f->params);
        for (int64_t k = 0; k < f->num_output_tokens(); ++k) replay.output_ids.push_back(fake_next(replay, 23));
        ASSERT_EQ(f->output_ids, replay.output_ids);
      }
    }
    EXPECT_FALSE(s.has_unfinished()) << "trial " << trial << " did not drain";
    EXPECT_EQ(num_done, num_added);
    EXPECT_EQ(s.num_in_flight(), 0);
    EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
    num_preemptions += s.num_preemptions_total();
  }
  EXPECT_GT(num_preemptions, 0) << "the simulation never exercised preemption";
  EXPECT_GT(num_both_busy, 100) << "two batches were rarely in flight together";
}

TEST(SchedulerPrefixCache, ASharedPrefixStartsAfterItsCachedBlocks) {
  Scheduler s(make_config(32, 4, 64));
  ASSERT_TRUE(s.add(make_seq("a", 10, 3)).ok());
  ScheduledBatch batch;
  step(s, batch);  // a's prompt: blocks [0,4) [4,8) computed and cached
  EXPECT_EQ(s.num_prefix_cache_queries_total(), 10);
  EXPECT_EQ(s.num_prefix_cache_hits_total(), 0);
  ASSERT_TRUE(s.add(make_seq("b", 13, 3)).ok());  // shares a's first 10 tokens
  step(s, batch);
  ASSERT_EQ(batch.entries.size(), 2u);
  const ScheduledEntry& b = batch.entries[1];
  EXPECT_EQ(b.seq->request_id, "b");
  EXPECT_EQ(b.start_position, 8);
  EXPECT_EQ(b.num_new_tokens, 5);
  EXPECT_TRUE(b.produces_token);
  EXPECT_EQ(b.seq->num_cached_tokens, 8);
  EXPECT_EQ(s.num_prefix_cache_queries_total(), 23);
  EXPECT_EQ(s.num_prefix_cache_hits_total(), 8);
  EXPECT_EQ(s.block_manager().block_table(b.seq_id)[0], s.block_manager().block_table(batch.entries[0].seq_id)[0]);
  // A prompt that is all cached still computes its last block's tokens.
  ASSERT_TRUE(s.add(make_seq("c", 8, 3)).ok());
  step(s, batch);
  const ScheduledEntry& c = batch.entries.back();
  EXPECT_EQ(c.seq->request_id, "c");
  EXPECT_EQ(c.start_position, 4);
  EXPECT_EQ(c.num_new_tokens, 4);
}

TEST(SchedulerPrefixCache, FinishedSequencesLeaveTheirBlocksCached) {
  Scheduler s(make_config(16, 4, 64));
  ASSERT_TRUE(s.add(make_seq("turn1", 9, 4)).ok());
  ScheduledBatch batch;
  std::unique_ptr<Sequence> turn1;
  for (int i = 0; i < 10 && !turn1; ++i)
    for (auto& f : step(s, batch)) turn1 = std::move(f);
  ASSERT_TRUE(turn1);
  EXPECT_EQ(s.block_manager().num_used_blocks(), 0);
  EXPECT_EQ(s.block_manager().num_free_blocks(), 16);
  EXPECT_EQ(s.block_manager().num_cached_blocks(), 3);  // 12 of its 13 tokens had KV computed
  // The next turn: the whole history plus new tokens.
  std::vector<int32_t> history = turn1->prompt_ids;
  history.insert(history.end(), turn1->output_ids.begin(), turn1->output_ids.end());
  for (int32_t t : {7, 8, 9}) history.push_back(t);
  SamplingParams p;
  p.max_tokens = 2;
  ASSERT_TRUE(s.add(Sequence("turn2", history, p)).ok());
  step(s, batch);
  ASSERT_EQ(batch.entries.size(), 1u);
  EXPECT_EQ(batch.entries[0].start_position, 12);
  EXPECT_EQ(batch.entries[0].num_new_tokens, 4);
}

TEST(SchedulerPrefixCache, HitsBlocksOfAPrefillStillInChunks) {
  Scheduler s(make_config(32, 4, 8));  // 8 tokens per step
  ASSERT_TRUE(s.add(make_seq("long", 20, 2)).ok());
  ScheduledBatch batch;
  step(s, batch);  // chunk [0, 8): blocks 0 and 1 cached
  ASSERT_TRUE(s.add(make_seq("twin", 20, 2)).ok());
  step(s, batch);  // long's chunk [8, 16) takes the whole budget
  step(s, batch);  // long [16, 20); twin after 4 blocks cached by now (16 tokens)
  ASSERT_EQ(batch.entries.size(), 2u);
  EXPECT_EQ(batch.entries[1].seq->request_id, "twin");
  EXPECT_EQ(batch.entries[1].start_position, 16);
  EXPECT_EQ(batch.entries[1].num_new_tokens, 4);
}

TEST(SchedulerPrefixCache, APreemptedSequenceResumesFromItsCachedBlocks) {
  Scheduler s(make_config(6, 4, 64));  // 24 token slots
  ASSERT_TRUE(s.add(make_seq("old", 9, 7, 100)).ok());  // ends at 16 tokens: 4 blocks
  ASSERT_TRUE(s.add(make_seq("new", 9, 10, 500)).ok());
  ScheduledBatch batch;
  step(s, batch);  // 3 + 3 blocks; positions 0..8 computed
  step(s, batch);
  step(s, batch);
  step(s, batch);  // position 11: the third blocks are full and cached
  step(s, batch);  // old needs a fourth block at position 12: new is preempted
  ASSERT_EQ(batch.preempted.size(), 1u);
  const Sequence* preempted = s.find("new");
  ASSERT_EQ(preempted->num_computed_tokens, 0);
  // old takes one block (new's tail, least recently used); new's first two blocks stay cached.
  EXPECT_EQ(s.block_manager().num_cached_blocks(), 3 + 2);
  std::map<std::string, std::unique_ptr<Sequence>> done;
  int64_t resumed_at = -1;
  for (int i = 0; i < 60 && s.has_unfinished(); ++i) {
    for (auto& f : step(s, batch)) done[f->request_id] = std::move(f);
    for (const auto& e : batch.entries)
      if (e.seq->request_id == "new" && e.seq->num_preemptions == 1 && resumed_at < 0) resumed_at = e.start_position;
  }
  EXPECT_EQ(resumed_at, 8);
  ASSERT_EQ(done.size(), 2u);
  for (auto& [id, seq] : done) {
    Sequence replay = make_seq(id, 9, id == "old" ? 7 : 10, id == "old" ? 100 : 500);
    for (int k = 0; k < replay.params.max_tokens; ++k) replay.output_ids.push_back(fake_next(replay));
    EXPECT_EQ(seq->output_ids, replay.output_ids) << id;
  }
}

TEST(SchedulerPrefixCache, OffNeverHits) {
  SchedulerConfig c = make_config(32, 4, 64);
  c.enable_prefix_caching = false;
  Scheduler s(c);
  ASSERT_TRUE(s.add(make_seq("a", 10, 2)).ok());
  ScheduledBatch batch;
  step(s, batch);
  ASSERT_TRUE(s.add(make_seq("b", 10, 2)).ok());
  step(s, batch);
  EXPECT_EQ(batch.entries.back().start_position, 0);
  EXPECT_EQ(s.num_prefix_cache_queries_total(), 0);
  EXPECT_EQ(s.block_manager().num_cached_blocks(), 0);
}

}  // namespace
}  // namespace troupe

namespace troupe {
namespace {

// Sequences still needing prompt logprobs share max_prompt_logits_tokens per step (their logits
// rows); the others take the rest of the token budget as before.
TEST(Scheduler, PromptLogprobsChunksShareTheirOwnBudget) {
  SchedulerConfig config = make_config(100, 4, 64);
  config.max_prompt_logits_tokens = 5;
  Scheduler s(config);
  Sequence scored = make_seq("scored", 12, 2);
  scored.params.prompt_logprobs = 0;
  Sequence other_scored = make_seq("other", 12, 2);
  other_scored.params.prompt_logprobs = 1;
  ASSERT_TRUE(s.add(std::move(scored)).ok());
  ASSERT_TRUE(s.add(std::move(other_scored)).ok());
  ASSERT_TRUE(s.add(make_seq("plain", 20, 2)).ok());
  ScheduledBatch batch;
  step(s, batch);
  // "scored" takes the 5, "other" waits (admission is in order), so "plain" waits behind it.
  ASSERT_EQ(batch.entries.size(), 1u);
  EXPECT_EQ(batch.entries[0].num_new_tokens, 5);
  EXPECT_FALSE(batch.entries[0].produces_token);
  int64_t num_steps = 1;
  while (s.num_running() + s.num_waiting() > 0 && num_steps < 50) {
    const auto finished = step(s, batch);  // kept: the batch's entries still point at them
    ++num_steps;
    int64_t scored_tokens = 0;
    for (const ScheduledEntry& e : batch.entries)
      if (e.seq->params.prompt_logprobs >= 0 && e.num_new_tokens > 1) scored_tokens += e.num_new_tokens;
    EXPECT_LE(scored_tokens, 5) << "step " << num_steps;
  }
  EXPECT_EQ(s.num_running() + s.num_waiting(), 0);
}

}  // namespace
}  // namespace troupe

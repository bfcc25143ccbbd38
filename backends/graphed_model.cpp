#include "backends/graphed_model.hpp"

#include <algorithm>
#include <atomic>

#include "runtime/logging.hpp"

namespace troupe {

std::vector<int64_t> GraphedModel::buckets(int64_t max_batch) {
  std::vector<int64_t> out;
  for (int64_t b : {1, 2, 4})
    if (b <= max_batch) out.push_back(b);
  for (int64_t b = 8; b <= max_batch; b += b < 32 ? 8 : (b < 128 ? 16 : 32)) out.push_back(b);
  return out;
}

GraphedModel::GraphedModel(std::unique_ptr<Model> inner, Backend& backend, StepGraphOptions options)
    : inner_(std::move(inner)), backend_(backend), options_(options), buckets_(buckets(options.max_batch)) {
  static std::atomic<int64_t> instances{0};
  instance_ = ++instances;
}

KvCacheSpec GraphedModel::kv_cache_spec(int64_t num_blocks, int64_t block_size) const {
  return inner_->kv_cache_spec(num_blocks + 1, block_size);
}

int64_t GraphedModel::bucket_for(const ForwardBatch& batch, LogitsMode mode) const {
  const int64_t n = batch.num_seqs();
  if (mode != LogitsMode::last_token || n == 0 || buckets_.empty() || n > buckets_.back() ||
      batch.hidden_states.defined() || batch.num_tokens() != n || !inner_->is_first_stage() ||
      !inner_->is_last_stage() || options_.max_model_len <= 0)
    return 0;
  for (const SequenceSlice& seq : batch.seqs)
    if (seq.num_new_tokens != 1 || !seq.needs_logits || seq.num_prompt_logits != 0 ||
        seq.context_len > options_.max_model_len)
      return 0;
  const int64_t bucket = *std::lower_bound(buckets_.begin(), buckets_.end(), n);
  return dropped_.count(bucket) ? 0 : bucket;
}

void GraphedModel::drop_recordings() {
  backend_.drop_graphs();
  recorded_.clear();
  dropped_.clear();
  cache_.clear();
}

Result<Tensor> GraphedModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  const int64_t bucket = bucket_for(batch, mode);
  if (bucket == 0 || cache.num_blocks() < 2) return inner_->forward(batch, cache, mode);
  // Recordings hold the cache's addresses: on another cache (even one reusing some of the old
  // one's memory) they are dropped.
  std::vector<const void*> addresses;
  addresses.reserve(size_t(cache.num_layers()) * cache.spec().components.size());
  for (int64_t layer = 0; layer < cache.num_layers(); ++layer)
    for (size_t c = 0; c < cache.spec().components.size(); ++c) addresses.push_back(cache.component(layer, int64_t(c)).raw());
  if (addresses != cache_) {
    if (!recorded_.empty()) backend_.drop_graphs();
    recorded_.clear();
    cache_ = std::move(addresses);
  }
  const int64_t n = batch.num_seqs(), block_size = cache.block_size();
  ForwardBatch padded = batch;
  padded.block_table_width = (options_.max_model_len + block_size - 1) / block_size;
  scratch_table_.assign(1, int32_t(cache.num_blocks() - 1));
  for (int64_t i = n; i < bucket; ++i) {
    padded.token_ids.push_back(0);
    padded.positions.push_back(0);
    padded.seqs.push_back({1, 1, &scratch_table_, true});
  }
  const int64_t key = (instance_ << 32) | bucket;
  auto phase = backend_.begin_graph(key);
  if (!phase.ok()) {
    dropped_.insert(bucket);
    return inner_->forward(batch, cache, mode);
  }
  auto logits = inner_->forward(padded, cache, mode);
  const Status done = backend_.end_graph(logits.ok());
  if (!logits.ok()) return inner_->forward(batch, cache, mode);  // the eager step reports the error
  if (!done.ok()) {
    log::get("engine")->warn("step graph for {} sequences dropped, those steps run eagerly: {}", bucket,
                             done.error().message);
    dropped_.insert(bucket);
    return inner_->forward(batch, cache, mode);
  }
  if (phase.value() == GraphPhase::capture) {
    recorded_.insert(bucket);
  } else {
    ++num_replayed_;
  }
  return logits.value().rows(0, n);
}

}  // namespace troupe

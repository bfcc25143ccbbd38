#include "models/vocab_parallel.hpp"

#include <cstring>

#include "models/attention.hpp"
#include "runtime/fp8_block.hpp"

namespace troupe {
namespace {

// The host shard [num_rows, hidden] with one zero row appended: where ids of other ranks look up.
Result<Tensor> with_zero_row(const Tensor& shard, const std::string& name) {
  Tensor host = shard;
  if (host.has_block_scale()) {
    auto wide = dequantize_fp8_block(host, name);
    if (!wide.ok()) return wide.error();
    host = std::move(wide.value());
  }
  std::vector<int64_t> shape = host.shape();
  shape[0] += 1;
  Tensor out = Tensor::zeros(host.dtype(), shape);
  std::memcpy(out.raw(), host.raw(), host.nbytes());
  return out;
}

}  // namespace

Result<VocabParallel> VocabParallel::load(const ModelConfig& config, const WeightLoader& weights, Backend& backend,
                                          bool embed, bool head) {
  VocabParallel tables;
  tables.shard_ = VocabShard::of(config);
  const int64_t rows = tables.shard_.num_rows(), hidden = config.hidden_size;
  const bool split = tables.shard_.size > 1;
  if (embed || (head && config.tie_word_embeddings)) {
    const std::string name = "model.embed_tokens.weight";
    if (!split) {
      auto table = load_weight(weights, backend, name, {rows, hidden});
      if (!table.ok()) return table.error();
      tables.embed_tokens_ = std::move(table.value());
    } else {
      auto host = weights(name, {rows, hidden});
      if (!host.ok()) return host.error();
      auto padded = with_zero_row(host.value(), name);
      if (!padded.ok()) return padded.error();
      auto table = backend.upload_weight(padded.value());
      if (!table.ok()) return make_error(table.error().code, name + ": " + table.error().message);
      tables.embed_tokens_ = std::move(table.value());
    }
  }
  if (head) {
    if (config.tie_word_embeddings) {
      tables.lm_head_ = split ? tables.embed_tokens_.rows(0, rows) : tables.embed_tokens_;
    } else {
      auto table = load_weight(weights, backend, "lm_head.weight", {rows, hidden});
      if (!table.ok()) return table.error();
      tables.lm_head_ = std::move(table.value());
    }
  }
  return tables;
}

Status VocabParallel::set_collective(Collective* collective) {
  const int64_t size = collective != nullptr ? collective->size() : 1;
  if (size != shard_.size || (collective != nullptr && collective->rank() != shard_.rank))
    return make_error(ErrorCode::invalid_argument,
                      "vocabulary shard " + std::to_string(shard_.rank) + " of " + std::to_string(shard_.size) +
                          " given a collective of " + std::to_string(size) + " ranks");
  collective_ = size > 1 ? collective : nullptr;
  return Status::success();
}

Status VocabParallel::check_collective() const {
  if (shard_.size > 1 && collective_ == nullptr)
    return make_error(ErrorCode::internal, "a vocabulary shard runs without its collective (set_tensor_parallel)");
  return Status::success();
}

Status VocabParallel::embed(Backend& backend, const std::vector<int32_t>& ids, Tensor h) {
  TROUPE_TRY(check_collective());
  const int64_t n = int64_t(ids.size());
  if (collective_ == nullptr) {
    backend.embedding(Tensor::from_i32(ids, {n}), embed_tokens_, h);
    return Status::success();
  }
  // Ids of other ranks (and none is padding: ids < V) look up the zero row after the shard.
  const int64_t begin = shard_.begin(), rows = shard_.num_rows();
  std::vector<int32_t> local(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    local[i] = int32_t(id >= begin && id < begin + rows ? id - begin : rows);
  }
  backend.embedding(Tensor::from_i32(local, {n}), embed_tokens_, h);
  return collective_->all_reduce_sum(h);
}

Status VocabParallel::lm_head(Backend& backend, const Tensor& hidden, Tensor logits) {
  TROUPE_TRY(check_collective());
  if (collective_ == nullptr) {
    backend.lm_head(hidden, lm_head_, logits);
    return Status::success();
  }
  Tensor local = backend.empty(DType::f32, {hidden.size(0), shard_.num_rows()});  // [rows, Vp / size]
  backend.lm_head(hidden, lm_head_, local);
  return collective_->all_gather(local, logits);
}

}  // namespace troupe

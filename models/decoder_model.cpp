#include "models/decoder_model.hpp"

#include "runtime/attention_metadata.hpp"

namespace troupe {

Status DecoderModel::resolve_range(const ModelConfig& config, LayerRange& range) {
  if (range.end < 0) range.end = config.num_hidden_layers;
  if (range.begin < 0 || range.begin > range.end || range.end > config.num_hidden_layers) {
    return make_error(ErrorCode::invalid_argument,
                      "layer range [" + std::to_string(range.begin) + ", " + std::to_string(range.end) +
                          ") outside the model's " + std::to_string(config.num_hidden_layers) + " layers");
  }
  return Status::success();
}

Status DecoderModel::load_vocab(const WeightLoader& weights) {
  const bool first = range_.begin == 0, last = range_.end == config_.num_hidden_layers;
  auto vocab = VocabParallel::load(config_, weights, backend_, first, last);
  if (!vocab.ok()) return vocab.error();
  vocab_ = std::move(vocab.value());
  return Status::success();
}

Status DecoderModel::load_final_norm(const WeightLoader& weights) {
  if (range_.end != config_.num_hidden_layers) return Status::success();
  auto norm = load_weight(weights, backend_, "model.norm.weight", {config_.hidden_size});
  if (!norm.ok()) return norm.error();
  final_norm_ = std::move(norm.value());
  return Status::success();
}

Status DecoderModel::load_layer_norms(const WeightLoader& weights, const std::string& prefix, DecoderLayer& layer) {
  const int64_t hidden = config_.hidden_size;
  auto in_norm = load_weight(weights, backend_, prefix + "input_layernorm.weight", {hidden});
  if (!in_norm.ok()) return in_norm.error();
  auto post_norm = load_weight(weights, backend_, prefix + "post_attention_layernorm.weight", {hidden});
  if (!post_norm.ok()) return post_norm.error();
  layer.input_norm = std::move(in_norm.value());
  layer.post_attention_norm = std::move(post_norm.value());
  return Status::success();
}

Status DecoderModel::set_tensor_parallel(Collective* collective) {
  collective_ = (collective != nullptr && collective->size() > 1) ? collective : nullptr;
  TROUPE_TRY(vocab_.set_collective(collective_));
  return Status::success();
}

Status DecoderModel::mlp_step(size_t i, const Tensor& normed, Tensor delta) {
  layers_[i].mlp->forward(normed, delta);
  return Status::success();
}

Result<Tensor> DecoderModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  TROUPE_TRY(check_cache(cache));
  auto meta_host = build_attention_metadata(batch, cache.block_size(), cache.num_blocks());
  if (!meta_host.ok()) return meta_host.error();
  const AttentionMetadata meta = backend_.upload_metadata(std::move(meta_host.value()));
  const int64_t n = meta.num_tokens, hidden = config_.hidden_size;
  const float eps = float(config_.rms_norm_eps);

  // The residual stream h: [n, hidden].
  Tensor h = backend_.empty(DType::f32, {n, hidden});
  if (is_first_stage()) {
    if (int64_t(batch.token_ids.size()) != n) {
      return make_error(ErrorCode::invalid_argument, "forward batch: token_ids and positions differ in length");
    }
    for (int32_t id : batch.token_ids) {
      if (id < 0 || id >= config_.vocab_size) {
        return make_error(ErrorCode::invalid_argument, "forward batch: token id " + std::to_string(id) +
                                                           " outside the vocabulary of " +
                                                           std::to_string(config_.vocab_size));
      }
    }
    TROUPE_TRY(vocab_.embed(backend_, batch.token_ids, h));  // vocab-parallel: summed over the ranks
  } else {
    const Tensor& in = batch.hidden_states;
    if (!in.defined() || in.dim() != 2 || in.size(0) != n || in.size(1) != hidden) {
      return make_error(ErrorCode::invalid_argument, "forward batch: hidden_states must be [" + std::to_string(n) +
                                                         ", " + std::to_string(hidden) + "] on a non-first stage");
    }
    backend_.copy(in, h);  // h is updated in place; the caller's tensor stays as it was
  }

  // The sublayers' input, read only by products: bf16 where the backend's products take bf16.
  Tensor normed = backend_.empty(backend_.matmul_input_dtype(), {n, hidden});
  Tensor delta = backend_.empty(DType::f32, {n, hidden});  // a sublayer's output, added to h lazily
  bool pending = false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer& layer = layers_[i];
    if (pending) {
      backend_.add_rmsnorm(h, delta, layer.input_norm, eps, normed);
    } else {
      backend_.rmsnorm(h, layer.input_norm, eps, normed);
    }
    layer.attention->forward(normed, meta, cache, int64_t(i), delta);
    if (collective_) TROUPE_TRY(collective_->all_reduce_sum(delta));  // o_proj is row-parallel
    backend_.add_rmsnorm(h, delta, layer.post_attention_norm, eps, normed);
    TROUPE_TRY(mlp_step(i, normed, delta));
    if (collective_) TROUPE_TRY(collective_->all_reduce_sum(delta));  // down_proj / local experts
    pending = true;
  }
  if (!is_last_stage()) {
    if (pending) backend_.add(h, delta, h);
    return h;
  }
  if (pending) {
    backend_.add_rmsnorm(h, delta, final_norm_, eps, normed);
  } else {
    backend_.rmsnorm(h, final_norm_, eps, normed);
  }
  const int64_t vocab = config_.vocab_size;
  if (mode == LogitsMode::all_tokens) {
    Tensor logits = backend_.empty(DType::f32, {n, vocab});
    TROUPE_TRY(vocab_.lm_head(backend_, normed, logits));
    return logits;
  }
  const int64_t num_rows = int64_t(meta.logits_rows.size());
  Tensor logits = backend_.empty(DType::f32, {num_rows, vocab});
  if (num_rows == 0) return logits;
  bool every_token = num_rows == n;  // a decode step sampling every sequence: no rows to pick
  for (int64_t i = 0; every_token && i < num_rows; ++i) every_token = meta.logits_rows[size_t(i)] == i;
  if (every_token) {
    TROUPE_TRY(vocab_.lm_head(backend_, normed, logits));
    return logits;
  }
  Tensor selected = backend_.empty(normed.dtype(), {num_rows, hidden});
  backend_.gather_rows(normed, meta.logits_rows, selected);
  TROUPE_TRY(vocab_.lm_head(backend_, selected, logits));
  return logits;
}

}  // namespace troupe

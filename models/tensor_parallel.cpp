#include "models/tensor_parallel.hpp"

#include <cstring>
#include <string>

#include "runtime/dtype.hpp"
#include "models/dummy_weights.hpp"
#include "models/model_loader.hpp"
#include "models/vocab_parallel.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

enum class Split { rows, cols, rank0_only, vocab_rows, none };

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The module a tensor belongs to: "q_b_proj" for "model.layers.3.self_attn.q_b_proj.weight".
std::string module_of(const std::string& name) {
  const size_t end = name.rfind('.');
  if (end == std::string::npos || end == 0) return "";
  const size_t dot = name.rfind('.', end - 1);
  const size_t begin = dot == std::string::npos ? 0 : dot + 1;
  return name.substr(begin, end - begin);
}

Split split_of(const std::string& name) {
  // Routed experts are expert-parallel: a rank loads its own whole and never asks for the others.
  if (name.find(".mlp.experts.") != std::string::npos) return Split::none;
  const std::string module = module_of(name);
  for (const char* m : {"q_proj", "k_proj", "v_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj"})
    if (module == m) return Split::rows;
  for (const char* m : {"o_proj", "down_proj"})
    if (module == m) return ends_with(name, ".bias") ? Split::rank0_only : Split::cols;
  if (module == "embed_tokens" || module == "lm_head") return Split::vocab_rows;
  return Split::none;  // norms, q_a_proj, kv_a_proj_with_mqa, the router
}

// Rows [r * rows / size, (r + 1) * rows / size) of a host tensor (any dtype; 1-D: elements).
Tensor slice_rows(const Tensor& full, int64_t rank, int64_t size) {
  const int64_t rows = full.size(0), part = rows / size;
  std::vector<int64_t> shape = full.shape();
  shape[0] = part;
  Tensor out = Tensor::empty(full.dtype(), shape);
  const size_t row_bytes = full.nbytes() / size_t(rows);
  std::memcpy(out.raw(), static_cast<const char*>(full.raw()) + size_t(rank * part) * row_bytes,
              size_t(part) * row_bytes);
  return out;
}

// Columns block `rank` of a 2-D host tensor.
Tensor slice_cols(const Tensor& full, int64_t rank, int64_t size) {
  const int64_t rows = full.size(0), cols = full.size(1), part = cols / size;
  Tensor out = Tensor::empty(full.dtype(), {rows, part});
  const size_t elem = dtype_size(full.dtype());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(out.raw()) + size_t(r * part) * elem,
                static_cast<const char*>(full.raw()) + size_t(r * cols + rank * part) * elem, size_t(part) * elem);
  return out;
}

// The rank's block of a vocabulary table [V, ...]: rows [shard.begin(), + num_rows), the rows past
// V zero (padding).
Tensor slice_vocab_rows(const Tensor& full, const VocabShard& shard) {
  std::vector<int64_t> shape = full.shape();
  shape[0] = shard.num_rows();
  Tensor out = Tensor::zeros(full.dtype(), shape);
  const size_t row_bytes = full.nbytes() / size_t(full.size(0));
  std::memcpy(out.raw(), static_cast<const char*>(full.raw()) + size_t(shard.begin()) * row_bytes,
              size_t(shard.num_real_rows()) * row_bytes);
  return out;
}

}  // namespace

Result<ModelConfig> tensor_parallel_config(const ModelConfig& full, int64_t size, int64_t rank) {
  if (size < 1) return make_error(ErrorCode::invalid_argument, "--tensor-parallel-size must be at least 1");
  if (rank < 0 || rank >= size)
    return make_error(ErrorCode::invalid_argument, "tensor-parallel rank " + std::to_string(rank) + " outside [0, " +
                                                       std::to_string(size) + ")");
  auto check = [&](int64_t value, const char* what) -> Status {
    if (value % size == 0) return Status::success();
    return make_error(ErrorCode::invalid_argument, "--tensor-parallel-size " + std::to_string(size) +
                                                       " does not divide the model's " + what + " (" +
                                                       std::to_string(value) + ")");
  };
  const MoeConfig& moe = full.moe;
  TROUPE_TRY(check(full.num_attention_heads, "num_attention_heads"));
  TROUPE_TRY(check(full.num_key_value_heads, "num_key_value_heads"));
  if (moe.has_dense_layers(full.num_hidden_layers)) TROUPE_TRY(check(full.intermediate_size, "intermediate_size"));
  if (moe.enabled()) {
    TROUPE_TRY(check(moe.n_routed_experts, "n_routed_experts"));
    TROUPE_TRY(check(moe.moe_intermediate_size * moe.n_shared_experts, "moe_intermediate_size * n_shared_experts"));
  }
  ModelConfig local = full;
  local.num_attention_heads /= size;
  local.num_key_value_heads /= size;  // DeepSeek-V3: equal to the heads, as transformers sets it
  if (moe.has_dense_layers(full.num_hidden_layers)) local.intermediate_size /= size;
  local.moe.expert_parallel_rank = rank;
  local.moe.expert_parallel_size = size;
  local.vocab_parallel_rank = rank;
  local.vocab_parallel_size = size;
  return local;
}

WeightLoader tensor_parallel_loader(WeightLoader full, int64_t rank, int64_t size, int64_t vocab_size) {
  return [full = std::move(full), rank, size, vocab_size](const std::string& name,
                                                          const std::vector<int64_t>& shape) -> Result<Tensor> {
    const Split split = split_of(name);
    if (split == Split::none || size == 1) return full(name, shape);
    if (split == Split::vocab_rows) {
      const VocabShard shard{vocab_size, rank, size};
      if (shape.empty() || shape[0] != shard.num_rows())
        return make_error(ErrorCode::internal, name + ": a vocabulary shard has " + std::to_string(shard.num_rows()) +
                                                   " rows");
      std::vector<int64_t> whole = shape;
      whole[0] = vocab_size;
      auto tensor = full(name, whole);
      if (!tensor.ok()) return tensor.error();
      if (tensor->has_block_scale())
        return make_error(ErrorCode::unsupported, name + ": FP8 vocabulary tables are not sliced (dequantize first)");
      return slice_vocab_rows(tensor.value(), shard);
    }
    std::vector<int64_t> whole = shape;
    if (split == Split::rows) whole[0] *= size;
    if (split == Split::cols) {
      if (whole.size() != 2) return make_error(ErrorCode::internal, name + ": row-parallel weights are 2-D");
      whole[1] *= size;
    }
    auto tensor = full(name, whole);
    if (!tensor.ok()) return tensor.error();
    switch (split) {
      case Split::rows: return slice_rows(tensor.value(), rank, size);
      case Split::cols: return slice_cols(tensor.value(), rank, size);
      case Split::rank0_only:
        // Added once after the sum: the other ranks add zeros.
        if (rank == 0) return tensor;
        return Tensor::zeros(tensor->dtype(), tensor->shape());
      case Split::vocab_rows:
      case Split::none: break;
    }
    return tensor;
  };
}

Result<std::unique_ptr<Model>> load_model_shard(const std::string& dir, const std::string& load_format,
                                                Backend& backend, LayerRange range, Collective& collective,
                                                bool dispatch_tokens) {
  if (load_format != "auto" && load_format != "dummy")
    return make_error(ErrorCode::invalid_argument, "load format must be auto or dummy, got '" + load_format + "'");
  auto full = ModelConfig::load(dir);
  if (!full.ok()) return full.error();
  auto local = tensor_parallel_config(full.value(), collective.size(), collective.rank());
  if (!local.ok()) return local.error();
  local->moe.dispatch_tokens = dispatch_tokens;
  std::unique_ptr<WeightStore> store;
  WeightLoader weights;
  if (load_format == "dummy") {
    weights = dummy_weight_loader();
  } else {
    auto opened = WeightStore::open(dir);
    if (!opened.ok()) return opened.error();
    store = std::make_unique<WeightStore>(std::move(opened.value()));
    weights = weight_store_loader(*store, full->quantization);
  }
  auto model = load_model(local.value(),
                          tensor_parallel_loader(weights, collective.rank(), collective.size(), full->vocab_size),
                          backend, range);
  if (!model.ok()) return model.error();
  TROUPE_TRY(model.value()->set_tensor_parallel(&collective));
  return model;
}

}  // namespace troupe

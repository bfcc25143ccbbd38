#include "models/model_loader.hpp"

#include <cstring>

#include "models/dummy_weights.hpp"
#include "models/deepseek_model.hpp"
#include "models/llama_model.hpp"
#include "models/stage_reader.hpp"
#include "runtime/fp8_block.hpp"
#include "runtime/fp8_scales.hpp"
#include "runtime/load_progress.hpp"
#include "runtime/logging.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {

namespace {

// `view` with its bytes in the host tensor `host` (read from the file) instead of the mapping.
TensorView host_view(const TensorView& view, const Tensor& host) {
  TensorView out = view;
  out.data = host.raw();
  return out;
}

}  // namespace

WeightLoader weight_store_loader(const WeightStore& store, const QuantizationConfig& quantization, Fp8Weights fp8,
                                 TensorReader read) {
  if (!read) {
    // Straight into an owned tensor (parallel preads; no page faults of the mapping).
    read = [&store](const TensorView& view) -> Result<Tensor> {
      Tensor host = Tensor::empty(view.dtype, view.shape);
      TROUPE_TRY(store.read_into(view, host.raw()));
      return host;
    };
  }
  return [&store, quantization, fp8, read](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
    auto view = store.get(name, shape);
    if (!view.ok()) return view.error();
    if (view->dtype != DType::f8_e4m3) return read(view.value());
    // FP8 block weights dequantize exactly to fp32 on the host; the backend then stores them in
    // its weight dtype.
    if (!quantization.is_fp8())
      return make_error(ErrorCode::corrupt_data, "tensor '" + name + "' in " + view->file +
                                                     " is F8_E4M3 but config.json has no fp8 quantization_config");
    const bool per_block = quantization.weight_scale == "block";
    const std::string scale_name = per_block ? fp8_scale_name(name) : fp8_weight_scale_name(name);
    auto scale = store.get(scale_name);
    if (!scale.ok())
      return make_error(ErrorCode::corrupt_data, "tensor '" + name + "' in " + view->file + " is F8_E4M3 without its '" +
                                                     scale_name + "'");
    if (per_block) TROUPE_TRY(check_fp8_block_scale(view.value(), scale.value(), quantization.block_n, quantization.block_k));
    auto weight = read(view.value());
    if (!weight.ok()) return weight.error();
    auto scale_host = read(scale.value());
    if (!scale_host.ok()) return scale_host.error();
    const TensorView weight_bytes = host_view(view.value(), weight.value());
    const TensorView scale_bytes = host_view(scale.value(), scale_host.value());
    if (!per_block)  // one scale per tensor or per output channel
      return fp8_scaled_weight(weight_bytes, scale_bytes, quantization.weight_scale, fp8 == Fp8Weights::keep);
    if (fp8 == Fp8Weights::dequantize)
      return dequantize_fp8_block(weight_bytes, scale_bytes, quantization.block_n, quantization.block_k);
    weight->set_block_scale(std::move(scale_host.value()));
    return weight;
  };
}

namespace {

// True when the stage `range` (end resolved) loads tensor `name`: its layers' tensors, the
// embeddings on the first stage, the final norm and LM head (every other non-layer tensor) on the
// last. Layers past the model's (DeepSeek's MTP layer) are never loaded.
bool is_stage_tensor(const std::string& name, const ModelConfig& config, LayerRange range) {
  const std::string marker = "layers.";
  const size_t at = name.find(marker);
  if (at != std::string::npos) {
    size_t end = at + marker.size();
    int64_t layer = 0;
    bool digits = false;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') {
      layer = layer * 10 + (name[end++] - '0');
      digits = true;
      if (layer > (int64_t(1) << 40)) return false;
    }
    if (digits && end < name.size() && name[end] == '.') return layer >= range.begin && layer < range.end;
  }
  if (name.find("embed_tokens") != std::string::npos) return range.begin == 0;
  return range.end == config.num_hidden_layers;
}

}  // namespace

Result<std::unique_ptr<Model>> load_model(const ModelConfig& config, const WeightStore& store, Backend& backend,
                                          LayerRange range) {
  const Fp8Weights fp8 = backend.keeps_fp8_weights() ? Fp8Weights::keep : Fp8Weights::dequantize;
  // What this stage reads is read ahead on a few threads (StageReader) while the model converts
  // and uploads the tensors read before; progress counts those bytes.
  LayerRange stage = range;
  if (stage.end < 0) stage.end = config.num_hidden_layers;
  StageReader reader(store, [&](const std::string& name) { return is_stage_tensor(name, config, stage); });
  LoadProgress progress = LoadProgress::to_terminal_or_log(reader.total_bytes());
  const WeightLoader inner = weight_store_loader(store, config.quantization, fp8,
                                                 [&reader](const TensorView& view) { return reader.read(view); });
  const WeightLoader counted = [&](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
    auto tensor = inner(name, shape);
    uint64_t bytes = 0;
    if (auto view = store.get(name); view.ok()) bytes += view->nbytes;
    if (auto scale = store.get(fp8_scale_name(name)); scale.ok()) bytes += scale->nbytes;
    progress.add(bytes);
    return tensor;
  };
  auto model = load_model(config, counted, backend, range);
  if (model.ok()) {
    progress.finish();
    const ReadAhead& ahead = reader.read_ahead();
    log::get("engine")->info("read ahead: {} items ({} in the reused ring, {} read on the loading thread); the loading "
                             "thread waited {:.1f} s for reads",
                             ahead.num_items(), ahead.num_in_ring(), ahead.num_read_by_consumer(), ahead.wait_seconds());
  }
  return model;
}

Result<std::unique_ptr<Model>> load_model(const ModelConfig& config, const WeightLoader& weights, Backend& backend,
                                          LayerRange range) {
  if (config.architecture == "LlamaForCausalLM" || config.architecture == "Qwen2ForCausalLM" ||
      config.architecture == "Qwen3ForCausalLM") {
    auto model = LlamaModel::load(config, backend, range, weights);
    if (!model.ok()) return model.error();
    return std::unique_ptr<Model>(std::move(model.value()));
  }
  if (config.architecture == "DeepseekV3ForCausalLM") {
    auto model = DeepseekModel::load(config, backend, range, weights);
    if (!model.ok()) return model.error();
    return std::unique_ptr<Model>(std::move(model.value()));
  }
  return make_error(ErrorCode::unsupported, "architecture " + config.architecture +
                                                " has no model implementation (served: LlamaForCausalLM, "
                                                "Qwen2ForCausalLM, Qwen3ForCausalLM, DeepseekV3ForCausalLM)");
}

Result<std::unique_ptr<Model>> load_model(const std::string& dir, Backend& backend, LayerRange range) {
  auto config = ModelConfig::load(dir);
  if (!config.ok()) return config.error();
  auto store = WeightStore::open(dir);
  if (!store.ok()) return store.error();
  return load_model(config.value(), store.value(), backend, range);
}

Result<std::unique_ptr<Model>> load_model_with_format(const std::string& dir, const std::string& load_format,
                                                      Backend& backend, LayerRange range) {
  if (load_format == "auto") return load_model(dir, backend, range);
  if (load_format != "dummy") {
    return make_error(ErrorCode::invalid_argument, "load format must be auto or dummy, got '" + load_format + "'");
  }
  auto config = ModelConfig::load(dir);
  if (!config.ok()) return config.error();
  DummyWeightOptions options;
  // FP8 block weights for the projections of an fp8 config, where the backend keeps them (the
  // memory and bytes of a real FP8 checkpoint); fp32 otherwise.
  options.fp8_blocks = config->quantization.is_fp8() && backend.keeps_fp8_weights();
  return load_model(config.value(), dummy_weight_loader(options), backend, range);
}

}  // namespace troupe

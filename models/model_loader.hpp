#pragma once
// Builds the Model of a Hugging Face folder (config.json + safetensors) on a backend.
#include <functional>
#include <memory>
#include <string>

#include "runtime/backend.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

class WeightStore;

// Loads the stage `range` of the model in `dir`: only that stage's tensors are read (first stage:
// embeddings; last stage: final norm + LM head). Errors name the file, field or tensor.
Result<std::unique_ptr<Model>> load_model(const std::string& dir, Backend& backend, LayerRange range = {});

// The same from an already parsed config and an open store (the store may be dropped afterwards).
Result<std::unique_ptr<Model>> load_model(const ModelConfig& config, const WeightStore& store, Backend& backend,
                                          LayerRange range = {});

// The same over any WeightLoader (a store, dummy weights, tensors in memory).
Result<std::unique_ptr<Model>> load_model(const ModelConfig& config, const WeightLoader& weights, Backend& backend,
                                          LayerRange range = {});

// `load_format` "auto": the safetensors of `dir`; "dummy": random weights from config.json alone
// (see models/dummy_weights.hpp). Other formats are an invalid_argument error.
Result<std::unique_ptr<Model>> load_model_with_format(const std::string& dir, const std::string& load_format,
                                                      Backend& backend, LayerRange range = {});

// What a loader does with the F8_E4M3 weights of an fp8 checkpoint.
enum class Fp8Weights {
  dequantize,  // fp32 host tensors: fp8 * their `_scale_inv` blocks
  keep,        // F8_E4M3 host tensors carrying their scale (Tensor::block_scale); load_weight
               // dequantizes those a backend does not keep
};

// Reads a checkpoint tensor's bytes into an owned host tensor of its dtype and shape.
using TensorReader = std::function<Result<Tensor>(const TensorView&)>;

// A WeightLoader over a WeightStore: copies each tensor to an owned host tensor in its dtype,
// F8_E4M3 weights (and their scales) as `fp8` says. A scale of the wrong shape or a missing one
// is an error naming both. `read` gets the bytes (load_model: a StageReader's read-ahead);
// without it, WeightStore::read_into into a fresh tensor.
WeightLoader weight_store_loader(const WeightStore& store, const QuantizationConfig& quantization = {},
                                 Fp8Weights fp8 = Fp8Weights::dequantize, TensorReader read = {});

}  // namespace troupe

#pragma once
// The sections of config.json beyond the Llama core: YaRN rope scaling, DeepSeek-V3's MLA and MoE
// fields, `quantization_config`, and generation_config.json's sampling defaults. Internal to
// ModelConfig::parse; each error names the file and the field, and values troupe cannot serve
// (another scoring function, AWQ/GPTQ, blocks other than 128x128) are `unsupported`.
#include "runtime/json_fields.hpp"
#include "runtime/model_config.hpp"

namespace troupe::detail {

Status parse_yarn(const FieldReader& rope, RopeScaling* out);
Status parse_deepseek_v3(const FieldReader& field, ModelConfig* config);
Status parse_quantization(const FieldReader& field, QuantizationConfig* out);
Status parse_generation_defaults(const FieldReader& gen, GenerationDefaults* out);

}  // namespace troupe::detail

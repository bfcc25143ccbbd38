#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model_config.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

// A Llama-3-style config.json; each test edits the fields it is about.
json llama_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": null, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "bos_token_id": 128000, "eos_token_id": 128001, "attention_bias": false, "mlp_bias": false})");
}

json qwen2_config() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "bos_token_id": 151643, "eos_token_id": 151645, "sliding_window": 32768, "use_sliding_window": false})");
}

Result<ModelConfig> parse(const json& config, const std::string& generation = "") {
  return ModelConfig::parse(config.dump(), generation, "/models/x/config.json");
}

void expect_error(const json& config, ErrorCode code, const std::vector<std::string>& words) {
  auto parsed = parse(config);
  ASSERT_FALSE(parsed.ok()) << config.dump();
  EXPECT_EQ(parsed.error().code, code) << parsed.error().message;
  for (const auto& word : words) {
    EXPECT_NE(parsed.error().message.find(word), std::string::npos)
        << "'" << word << "' not in: " << parsed.error().message;
  }
}

TEST(ModelConfig, ParsesLlama) {
  const json source = llama_config();
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, "LlamaForCausalLM");
  EXPECT_EQ(config->model_type, "llama");
  EXPECT_EQ(config->vocab_size, source["vocab_size"].get<int64_t>());
  EXPECT_EQ(config->hidden_size, source["hidden_size"].get<int64_t>());
  EXPECT_EQ(config->intermediate_size, source["intermediate_size"].get<int64_t>());
  EXPECT_EQ(config->num_hidden_layers, source["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(config->num_attention_heads, source["num_attention_heads"].get<int64_t>());
  EXPECT_EQ(config->num_key_value_heads, source["num_key_value_heads"].get<int64_t>());
  EXPECT_EQ(config->head_dim, source["hidden_size"].get<int64_t>() / source["num_attention_heads"].get<int64_t>());
  EXPECT_EQ(config->max_position_embeddings, source["max_position_embeddings"].get<int64_t>());
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, source["rms_norm_eps"].get<double>());
  EXPECT_DOUBLE_EQ(config->rope_theta, source["rope_theta"].get<double>());
  EXPECT_EQ(config->rope_scaling.type, "");
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  EXPECT_EQ(config->bos_token_id, source["bos_token_id"].get<int64_t>());
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{source["eos_token_id"].get<int64_t>()}));
}

TEST(ModelConfig, LlamaDefaults) {
  json source = llama_config();
  for (const char* key : {"num_key_value_heads", "tie_word_embeddings", "attention_bias", "rope_theta",
                          "rms_norm_eps", "torch_dtype", "eos_token_id", "bos_token_id"}) {
    source.erase(key);
  }
  source["head_dim"] = nullptr;  // null reads as absent
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->num_key_value_heads, config->num_attention_heads);
  EXPECT_EQ(config->head_dim, config->hidden_size / config->num_attention_heads);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->attention_bias);
  const ModelConfig defaults;
  EXPECT_EQ(config->rope_theta, defaults.rope_theta);
  EXPECT_EQ(config->rms_norm_eps, defaults.rms_norm_eps);
  EXPECT_EQ(config->bos_token_id, -1);
  EXPECT_TRUE(config->eos_token_ids.empty());

  source["head_dim"] = 128;  // explicit head_dim wins over hidden / heads
  EXPECT_EQ(parse(source)->head_dim, 128);
}

TEST(ModelConfig, Llama3RopeScaling) {
  json source = llama_config();
  source["rope_scaling"] = json::parse(R"({"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
      "original_max_position_embeddings": 8192, "rope_type": "llama3"})");
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 8192);

  source["rope_scaling"].erase("low_freq_factor");
  expect_error(source, ErrorCode::corrupt_data, {"rope_scaling.low_freq_factor", "missing", "/models/x/config.json"});
}

TEST(ModelConfig, LinearAndDefaultRopeScalingAndUnsupportedTypes) {
  json source = llama_config();
  source["rope_scaling"] = json::parse(R"({"type": "linear", "factor": 2.0})");
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 2.0);

  source["rope_scaling"] = json::parse(R"({"rope_type": "default"})");
  EXPECT_EQ(parse(source)->rope_scaling.type, "");

  source["rope_scaling"] = json::parse(R"({"rope_type": "dynamic", "factor": 4.0})");
  expect_error(source, ErrorCode::unsupported, {"dynamic", "llama3", "yarn", "/models/x/config.json"});
  // YaRN parses, but only DeepSeek-V3 applies its cos/sin scale.
  source["rope_scaling"] = json::parse(R"({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})");
  expect_error(source, ErrorCode::unsupported, {"yarn", "DeepseekV3ForCausalLM only", "LlamaForCausalLM"});
  source["rope_scaling"] = json::parse(R"({"rope_type": "linear", "factor": 0})");
  expect_error(source, ErrorCode::corrupt_data, {"rope_scaling.factor"});
}

TEST(ModelConfig, RopeParametersOfNewerTransformers) {
  json source = llama_config();
  source.erase("rope_theta");
  source.erase("rope_scaling");
  source["rope_parameters"] = json::parse(R"({"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
  EXPECT_EQ(config->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 8.0);

  source["rope_parameters"] = json::parse(R"({"rope_theta": 1000000.0, "rope_type": "default"})");
  config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_DOUBLE_EQ(config->rope_theta, 1000000.0);
  EXPECT_EQ(config->rope_scaling.type, "");
}

TEST(ModelConfig, ParsesQwen2WithBiasAndTiedEmbeddings) {
  const json source = qwen2_config();
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(config->model_type, "qwen2");
  EXPECT_TRUE(config->attention_bias);  // Qwen2 q/k/v always carry a bias
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_EQ(config->num_key_value_heads, source["num_key_value_heads"].get<int64_t>());
  EXPECT_EQ(config->head_dim, source["hidden_size"].get<int64_t>() / source["num_attention_heads"].get<int64_t>());
  EXPECT_DOUBLE_EQ(config->rope_theta, source["rope_theta"].get<double>());

  json untied = source;
  untied["tie_word_embeddings"] = false;  // the key is honoured when present
  EXPECT_FALSE(parse(untied)->tie_word_embeddings);
}

TEST(ModelConfig, UnknownArchitectureListsSupportedOnes) {
  json source = llama_config();
  source["architectures"] = {"MambaForCausalLM"};
  expect_error(source, ErrorCode::unsupported,
               {"MambaForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "/models/x/config.json"});
  source.erase("architectures");
  source["model_type"] = "mamba";
  expect_error(source, ErrorCode::unsupported, {"mamba"});
  source.erase("model_type");
  expect_error(source, ErrorCode::corrupt_data, {"architectures", "missing"});
}

TEST(ModelConfig, MissingOrBadFieldsAreNamedWithTheFile) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "max_position_embeddings"}) {
    json source = llama_config();
    source.erase(key);
    expect_error(source, ErrorCode::corrupt_data, {std::string("'") + key + "'", "missing", "/models/x/config.json"});
    source[key] = 0;
    expect_error(source, ErrorCode::corrupt_data, {std::string("'") + key + "'", "> 0"});
    source[key] = "big";
    expect_error(source, ErrorCode::corrupt_data, {std::string("'") + key + "'", "integer"});
  }
  json source = llama_config();
  source["num_key_value_heads"] = 5;  // 32 % 5 != 0
  expect_error(source, ErrorCode::corrupt_data, {"num_key_value_heads", "32"});
  source = llama_config();
  source.erase("head_dim");
  source["hidden_size"] = 2050;  // not divisible by 32 heads
  expect_error(source, ErrorCode::corrupt_data, {"hidden_size", "head_dim"});
  source = llama_config();
  source["tie_word_embeddings"] = "yes";
  expect_error(source, ErrorCode::corrupt_data, {"tie_word_embeddings"});
  source = llama_config();
  source["rms_norm_eps"] = -1.0;
  expect_error(source, ErrorCode::corrupt_data, {"rms_norm_eps"});

  auto garbage = ModelConfig::parse("{\"vocab_size\": ", "", "/models/x/config.json");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message.find("/models/x/config.json"), std::string::npos);
}

TEST(ModelConfig, EosListAndGenerationConfigOverride) {
  json source = llama_config();
  source["eos_token_id"] = {128001, 128008, 128009};
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));

  config = parse(source, R"({"bos_token_id": 7, "eos_token_id": 9, "temperature": 0.6})");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->bos_token_id, 7);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{9}));

  config = parse(source, R"({"temperature": 0.6})");  // absent keys keep config.json's ids
  EXPECT_EQ(config->eos_token_ids.size(), 3u);

  auto bad = parse(source, R"({"eos_token_id": "x"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("/models/x/generation_config.json"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("eos_token_id"), std::string::npos);
}

TEST(ModelConfig, LoadsFromFolder) {
  const auto dir = std::filesystem::temp_directory_path() / ("troupe_model_config_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto missing = ModelConfig::load(dir.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::not_found);
  EXPECT_NE(missing.error().message.find("config.json"), std::string::npos);

  std::ofstream(dir / "config.json") << qwen2_config().dump(2);
  auto config = ModelConfig::load(dir.string());
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{151645}));

  std::ofstream(dir / "generation_config.json") << R"({"bos_token_id": 151643, "eos_token_id": [151645, 151643]})";
  config = ModelConfig::load(dir.string());
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{151645, 151643}));

  auto broken = json(qwen2_config());
  broken.erase("num_hidden_layers");
  std::ofstream(dir / "config.json") << broken.dump();
  config = ModelConfig::load(dir.string());
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().message.find((dir / "config.json").string()), std::string::npos);
  EXPECT_NE(config.error().message.find("num_hidden_layers"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace troupe

// Structured outputs through the engine: random-weight fixture models sampled at temperature 1
// under a set of schemas (nested objects, arrays, enums, numbers, escaped and non-ASCII strings,
// required and optional fields, anyOf, $ref) with several seeds; every output must parse as JSON
// and validate against its schema (tests/unit/json_schema_check.hpp), and end with EOS (stop).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <regex>

#include <nlohmann/json.hpp>

#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "grammar/token_vocabulary.hpp"
#include "tests/unit/json_schema_check.hpp"
#include "tests/unit/output_collector.hpp"

namespace troupe {
namespace {

using Outputs = testing::OutputCollector;

const std::string kModels = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/";


std::unique_ptr<LlmEngine> make_engine(const std::string& model) {
  Config config;
  config.model = kModels + model;
  config.num_threads = 2;
  config.num_kv_blocks = 512;
  config.block_size = 16;
  config.max_num_seqs = 16;
  auto engine = backends::build_engine(config, nullptr);
  EXPECT_TRUE(engine.ok()) << engine.error().message;
  (*engine)->start();
  return std::move(engine.value());
}

GenerationRequest constrained(const std::string& id, OutputConstraint c, int64_t seed) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_ids = {5, 17, 42, 99, 7};
  r.params.temperature = 1.0;
  r.params.seed = seed;
  r.params.max_tokens = 600;
  r.params.constraint = std::move(c);
  return r;
}

std::string text_of(const grammar::TokenVocabulary& vocab, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids)
    if (!vocab.is_eos(id)) s += vocab.token_bytes(id);
  return s;
}

// Strings carry maxLength: a random model almost never closes an unbounded string.
const char* kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"]})",
    R"({"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"object","properties":{"c":{"type":"boolean"}},"required":["c"]}},"required":["b"]}},"required":["a"]})",
    R"({"type":"array","items":{"type":"integer","minimum":-50,"maximum":50},"minItems":1,"maxItems":5})",
    R"({"type":"object","properties":{"color":{"enum":["red","green","日本",null,3]},"shade":{"const":"dark"}},"required":["color","shade"]})",
    R"({"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number","minimum":-1,"maximum":1}},"required":["x","y"]})",
    R"({"type":"object","properties":{"text":{"type":"string","minLength":1,"maxLength":5}},"required":["text"]})",
    R"({"type":"object","properties":{"id":{"type":"integer"},"note":{"type":"string","maxLength":4},"flag":{"type":"boolean"},"extra":{"type":"null"}},"required":["id"]})",
    R"({"type":"object","properties":{"value":{"anyOf":[{"type":"integer","maximum":9,"minimum":0},{"type":"string","maxLength":3},{"type":"null"}]}},"required":["value"]})",
    R"({"$defs":{"pt":{"type":"object","properties":{"x":{"type":"integer","minimum":0,"maximum":9},"y":{"type":"integer","minimum":0,"maximum":9}},"required":["x","y"]}},"type":"object","properties":{"from":{"$ref":"#/$defs/pt"},"to":{"$ref":"#/$defs/pt"}},"required":["from","to"]})",
    R"({"type":"array","items":{"type":"object","properties":{"k":{"type":"string","maxLength":3},"v":{"type":"array","items":{"type":"boolean"},"maxItems":3}},"required":["k","v"]},"maxItems":3})",
    R"({"type":"object","properties":{"when":{"type":"string","format":"date"},"code":{"type":"string","pattern":"^[A-Z]{2}-[0-9]{3}$"}},"required":["when","code"]})",
    R"({"type":"object","properties":{"node":{"$ref":"#/$defs/node"}},"required":["node"],"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":99},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}}})",
    R"({"type":"object","properties":{"pair":{"type":"array","prefixItems":[{"type":"string","maxLength":2},{"type":"integer","minimum":1,"maximum":3}],"items":false,"minItems":2}},"required":["pair"]})",
    R"({"type":["integer","null"],"minimum":10,"maximum":20})",
};

void expect_schemas_hold(const std::string& model, int32_t eos, int64_t vocab_size, const std::vector<const char*>& schemas,
                         int num_seeds) {
  auto engine = make_engine(model);
  auto vocab = grammar::TokenVocabulary::from_tokenizer_json(kModels + model + "/tokenizer.json", vocab_size, {eos});
  ASSERT_TRUE(vocab.ok());
  Outputs out;
  size_t n = 0;
  for (size_t s = 0; s < schemas.size(); ++s)
    for (int seed = 0; seed < num_seeds; ++seed, ++n) {
      const std::string id = std::to_string(s) + "/" + std::to_string(seed);
      ASSERT_TRUE(engine->submit(constrained(id, {OutputConstraint::Kind::json_schema, schemas[s]}, 1000 + seed),
                                 out.callback(id)).ok());
    }
  ASSERT_TRUE(out.wait_all(n));
  int num_non_ascii = 0;
  for (size_t s = 0; s < schemas.size(); ++s) {
    testing::JsonSchemaCheck check(nlohmann::json::parse(schemas[s]));
    for (int seed = 0; seed < num_seeds; ++seed) {
      const std::string id = std::to_string(s) + "/" + std::to_string(seed);
      const std::string text = text_of(*vocab.value(), out.tokens[id]);
      EXPECT_EQ(out.finish[id], "stop") << id << ": " << text << " " << out.errors[id];
      auto doc = nlohmann::json::parse(text, nullptr, false);
      ASSERT_FALSE(doc.is_discarded()) << id << " does not parse: " << text;
      EXPECT_EQ(check.check(doc), "") << id << ": " << text;
      for (unsigned char c : text) num_non_ascii += c >= 0x80;
    }
  }
  EXPECT_GT(num_non_ascii, 0) << "no output exercised non-ASCII strings";
}

TEST(StructuredOutputEngine, EverySchemaOutputParsesAndValidates) {
  std::vector<const char*> schemas(std::begin(kSchemas), std::end(kSchemas));
  expect_schemas_hold("llama-tiny", 1, 512, schemas, 3);
}

TEST(StructuredOutputEngine, OnTheRealDeepSeekVocabulary) {
  expect_schemas_hold("deepseek-r1-tiny", 1, 129280, {kSchemas[3], kSchemas[7]}, 2);
}

TEST(StructuredOutputEngine, RegexChoiceAndJsonObject) {
  auto engine = make_engine("llama-tiny");
  auto vocab = grammar::TokenVocabulary::from_tokenizer_json(kModels + "llama-tiny/tokenizer.json", 512, {1});
  ASSERT_TRUE(vocab.ok());
  Outputs out;
  for (int seed = 0; seed < 4; ++seed) {
    const std::string s = std::to_string(seed);
    ASSERT_TRUE(engine->submit(constrained("re" + s, {OutputConstraint::Kind::regex, "[a-z]{2,4}-\\d{1,3}(!|\\?)?"}, seed),
                               out.callback("re" + s)).ok());
    ASSERT_TRUE(engine->submit(constrained("ch" + s, {OutputConstraint::Kind::choice, R"(["yes","no","maybe so"])"}, seed),
                               out.callback("ch" + s)).ok());
  }
  ASSERT_TRUE(out.wait_all(8));
  for (int seed = 0; seed < 4; ++seed) {
    const std::string s = std::to_string(seed);
    const std::string re = text_of(*vocab.value(), out.tokens["re" + s]);
    EXPECT_TRUE(std::regex_match(re, std::regex("[a-z]{2,4}-[0-9]{1,3}(!|\\?)?"))) << re;
    const std::string ch = text_of(*vocab.value(), out.tokens["ch" + s]);
    EXPECT_TRUE(ch == "yes" || ch == "no" || ch == "maybe so") << ch;
    EXPECT_EQ(out.finish["re" + s], "stop");
  }
}

TEST(StructuredOutputEngine, ABadConstraintIsRefusedAtSubmit) {
  auto engine = make_engine("llama-tiny");
  Outputs out;
  Status s = engine->submit(constrained("bad", {OutputConstraint::Kind::json_schema, R"({"type":"object","not":{}})"}, 1),
                            out.callback("bad"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(s.error().message.find("'not'"), std::string::npos) << s.error().message;
  EXPECT_FALSE(engine->submit(constrained("bad2", {OutputConstraint::Kind::regex, "(a"}, 1), out.callback("bad2")).ok());
}

}  // namespace
}  // namespace troupe

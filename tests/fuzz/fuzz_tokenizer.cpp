// The tokenizer.json loader and the encoder/decoder. An input that starts with '{' is a
// tokenizer.json (a fixture's, mutated): loaded, then made to encode and decode a fixed text.
// Any other input is text, encoded and decoded by the committed fixture tokenizers (byte-level
// BPE of Llama-3 / Qwen and a sentencepiece BPE with byte fallback).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "text/tokenizer.hpp"

namespace {

const char* const kModels[] = {"llama-tiny", "qwen3-tiny", "llama2-sharded", "troupe-demo"};
const std::string kSample = "Hello, world! 123 <|im_start|> ünïcødé\n\n  \t tabs 🙂 ";

void round_trip(const troupe::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> ids = tokenizer.encode(text, true);
  (void)tokenizer.decode(ids, false);
  (void)tokenizer.decode(ids, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<troupe::Tokenizer> tokenizers = [] {
    std::vector<troupe::Tokenizer> out;
    for (const char* model : kModels)
      out.push_back(troupe::Tokenizer::load(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/" + model).value());
    return out;
  }();
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (!input.empty() && input[0] == '{') {
    auto tokenizer = troupe::Tokenizer::from_json(input, "");
    if (tokenizer.ok()) {
      round_trip(tokenizer.value(), kSample);
      (void)tokenizer->decode({0, 1, 2, -1, 1 << 30}, false);
    }
    return 0;
  }
  for (const auto& tokenizer : tokenizers) round_trip(tokenizer, input);
  return 0;
}

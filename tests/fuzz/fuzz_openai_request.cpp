// An OpenAI request body through to the rendered chat prompt and its token ids: the JSON pre-scan
// and parse, every endpoint's field validation, the model's chat template and tokenizer
// (troupe-demo, committed). Bad input must give an error, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/openai_request.hpp"
#include "http/responses_request.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace {

const std::string kModelDir = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/troupe-demo";

struct Model {
  troupe::ChatTemplate chat_template = troupe::ChatTemplate::load(kModelDir).value();
  troupe::Tokenizer tokenizer = troupe::Tokenizer::load(kModelDir).value();
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Model model;
  using namespace troupe::http;
  const std::string body(reinterpret_cast<const char*>(data), size);
  auto json = parse_json_body(body);
  if (!json.ok()) return 0;
  std::string param;
  troupe::GenerationDefaults defaults{0.6, 0.95, 20};
  if (auto chat = parse_chat_request(json.value(), param, defaults); chat.ok()) {
    auto prompt = model.chat_template.render(chat->messages, chat->add_generation_prompt, chat->tools);
    if (prompt.ok()) model.tokenizer.encode(prompt.value(), false);
  }
  if (auto completion = parse_completion_request(json.value(), param); completion.ok()) {
    if (!completion->prompt_is_ids) model.tokenizer.encode(completion->prompt_text, true);
  }
  if (auto tokenize = parse_tokenize_request(json.value(), param); tokenize.ok() && tokenize->is_chat) {
    (void)model.chat_template.render(tokenize->messages, tokenize->add_generation_prompt, nullptr);
  }
  if (auto responses = parse_responses_request(json.value(), param, defaults); responses.ok()) {
    auto prompt = model.chat_template.render(responses->chat.messages, true, nullptr);
    if (prompt.ok()) model.tokenizer.encode(prompt.value(), false);
  }
  if (auto ids = parse_detokenize_request(json.value(), param); ids.ok()) {
    (void)model.tokenizer.decode(ids.value(), true);
  }
  return 0;
}

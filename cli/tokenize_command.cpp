// `troupe tokenize`: the model's tokenizer and chat template from the command line.
//   --text TEXT                          -> {"ids":[...]}    (special tokens added as HF's encode() does)
//   --messages-json FILE [--add-generation-prompt] -> {"prompt":"...","ids":[...]}
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace troupe::cli {

int run_tokenize(const Config& config, const TokenizeOptions& options) {
  if (config.model.empty()) return report_error(make_error(ErrorCode::invalid_argument, "--model is required"));
  if (options.text.has_value() == !options.messages_json.empty())
    return report_error(make_error(ErrorCode::invalid_argument, "give exactly one of --text and --messages-json"));
  auto tokenizer = Tokenizer::load(config.model);
  if (!tokenizer.ok()) return report_error(tokenizer.error());

  if (options.text) {
    nlohmann::json out{{"ids", tokenizer->encode(*options.text, !options.no_special_tokens)}};
    std::cout << out.dump() << "\n";
    return 0;
  }

  std::ifstream file(options.messages_json);
  if (!file) return report_error(make_error(ErrorCode::not_found, "--messages-json: cannot read " + options.messages_json));
  std::stringstream text;
  text << file.rdbuf();
  nlohmann::json document = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded())
    return report_error(make_error(ErrorCode::invalid_argument, "--messages-json: " + options.messages_json + " is not valid JSON"));
  // Either a bare messages array or {"messages": [...], "tools": [...]}.
  nlohmann::json messages = document.is_object() ? document.value("messages", nlohmann::json()) : document;
  nlohmann::json tools = document.is_object() ? document.value("tools", nlohmann::json()) : nlohmann::json();
  if (!messages.is_array())
    return report_error(make_error(ErrorCode::invalid_argument, "--messages-json: expected an array of messages"));

  auto chat_template = ChatTemplate::load(config.model);
  if (!chat_template.ok()) return report_error(chat_template.error());
  auto prompt = chat_template->render(messages, options.add_generation_prompt, tools);
  if (!prompt.ok()) return report_error(prompt.error());
  nlohmann::json out{{"prompt", prompt.value()}, {"ids", tokenizer->encode(prompt.value(), false)}};
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace troupe::cli

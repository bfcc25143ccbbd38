// `troupe generate --messages-jsonl FILE`: many chats through the engine of this process at once.
// Each input line is {"messages": [...]} (or a bare messages array); each is rendered with the
// model's chat template (with the generation prompt), all are submitted together so the engine
// batches them, and one JSON line per input comes out, in input order:
//   {"index": i, "text": "...", "token_ids": [...], "finish_reason": "stop"}
// and a last line {"summary": {"requests", "completion_tokens", "seconds", "tokens_per_second"}}.
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "backends/build_engine.hpp"
#include "cli/commands.hpp"
#include "engine/llm_engine.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace troupe::cli {
namespace {

Result<std::vector<nlohmann::json>> read_chats(const std::string& path) {
  std::ifstream file(path);
  if (!file) return make_error(ErrorCode::not_found, "--messages-jsonl: cannot read " + path);
  std::vector<nlohmann::json> chats;
  std::string line;
  for (int64_t number = 1; std::getline(file, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json document = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    nlohmann::json messages = document.is_object() ? document.value("messages", nlohmann::json()) : document;
    if (document.is_discarded() || !messages.is_array())
      return make_error(ErrorCode::invalid_argument, "--messages-jsonl: line " + std::to_string(number) + " of " +
                                                         path + " is not a messages array or {\"messages\": [...]}");
    chats.push_back(std::move(messages));
  }
  if (chats.empty()) return make_error(ErrorCode::invalid_argument, "--messages-jsonl: " + path + " has no chats");
  return chats;
}

}  // namespace

int run_generate_batch(const Config& config, const GenerateOptions& options) {
  auto chats = read_chats(options.messages_jsonl);
  if (!chats.ok()) return report_error(chats.error());
  auto tokenizer = Tokenizer::load(config.model);
  if (!tokenizer.ok()) return report_error(tokenizer.error());
  auto chat_template = ChatTemplate::load(config.model);
  if (!chat_template.ok()) return report_error(chat_template.error());

  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < chats->size(); ++i) {
    auto prompt = chat_template->render((*chats)[i], /*add_generation_prompt=*/true, nlohmann::json());
    if (!prompt.ok()) return report_error(prompt.error());
    GenerationRequest request;
    request.request_id = "generate-" + std::to_string(i);
    request.prompt_ids = tokenizer->encode(prompt.value(), /*add_special_tokens=*/false);
    request.params = sampling_params(options);
    requests.push_back(std::move(request));
  }

  auto engine = backends::build_engine(config);
  if (!engine.ok()) return report_error(engine.error());
  (*engine)->start();

  struct Outcome {
    std::vector<int32_t> token_ids;
    FinishReason finish_reason = FinishReason::none;
    std::string error;
  };
  std::vector<Outcome> outcomes(requests.size());
  std::mutex mutex;
  std::condition_variable done_cv;
  size_t finished = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < requests.size(); ++i) {
    Status submitted = (*engine)->submit(std::move(requests[i]), [&, i](const GenerationOutput& out) {
      std::lock_guard lock(mutex);
      Outcome& outcome = outcomes[i];
      outcome.token_ids.insert(outcome.token_ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
      if (out.finish_reason != FinishReason::none) {
        outcome.finish_reason = out.finish_reason;
        outcome.error = out.error_message;
        ++finished;
        done_cv.notify_all();
      }
    });
    if (!submitted.ok()) {
      (*engine)->stop();
      return report_error(submitted.error());
    }
  }
  {
    std::unique_lock lock(mutex);
    done_cv.wait(lock, [&] { return finished == outcomes.size(); });
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (*engine)->stop();

  int64_t completion_tokens = 0;
  int exit_code = 0;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const Outcome& outcome = outcomes[i];
    completion_tokens += int64_t(outcome.token_ids.size());
    nlohmann::json line{{"index", i},
                        {"text", tokenizer->decode(outcome.token_ids, /*skip_special_tokens=*/true)},
                        {"token_ids", outcome.token_ids},
                        {"finish_reason", to_string(outcome.finish_reason)}};
    if (outcome.finish_reason == FinishReason::error) {
      line["error"] = outcome.error;
      exit_code = 1;
    }
    std::cout << line.dump() << "\n";
  }
  nlohmann::json summary{{"requests", outcomes.size()},
                         {"completion_tokens", completion_tokens},
                         {"seconds", seconds},
                         {"tokens_per_second", seconds > 0 ? double(completion_tokens) / seconds : 0.0}};
  std::cout << nlohmann::json{{"summary", summary}}.dump() << "\n";
  return exit_code;
}

}  // namespace troupe::cli

// `troupe generate`: one prompt through the engine of this process, streamed as it comes.
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "text/tokenizer.hpp"

namespace troupe::cli {

SamplingParams sampling_params(const GenerateOptions& options) {
  SamplingParams p;
  p.max_tokens = options.max_tokens;
  p.temperature = options.temperature;
  p.top_p = options.top_p;
  p.top_k = options.top_k;
  p.min_p = options.min_p;
  p.repetition_penalty = options.repetition_penalty;
  p.presence_penalty = options.presence_penalty;
  p.frequency_penalty = options.frequency_penalty;
  p.seed = options.seed;
  p.ignore_eos = options.ignore_eos;
  return p;
}

int run_generate(const Config& config, const GenerateOptions& options) {
  const int given = int(!options.prompt.empty()) + int(!options.prompt_ids.empty()) + int(!options.messages_jsonl.empty());
  if (given != 1)
    return report_error(
        make_error(ErrorCode::invalid_argument, "give exactly one of --prompt, --prompt-ids and --messages-jsonl"));
  if (!options.messages_jsonl.empty()) return run_generate_batch(config, options);

  std::optional<Tokenizer> tokenizer;
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(config.model) / "tokenizer.json", ec)) {
    auto loaded = Tokenizer::load(config.model);
    if (!loaded.ok()) return report_error(loaded.error());
    tokenizer = std::move(loaded.value());
  }

  GenerationRequest request;
  request.request_id = "generate-0";
  if (!options.prompt_ids.empty()) {
    auto ids = parse_id_list(options.prompt_ids);
    if (!ids.ok()) return report_error(ids.error());
    for (int64_t id : ids.value()) request.prompt_ids.push_back(int32_t(std::min<int64_t>(id, INT32_MAX)));
  } else {
    if (!tokenizer)
      return report_error(make_error(ErrorCode::not_found,
                                     "--prompt needs " + config.model + "/tokenizer.json; use --prompt-ids"));
    request.prompt_ids = tokenizer->encode(options.prompt, /*add_special_tokens=*/true);
  }
  request.params = sampling_params(options);

  auto engine = backends::build_engine(config);  // --tensor-parallel-size ranks too
  if (!engine.ok()) return report_error(engine.error());
  (*engine)->start();

  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  GenerationOutput last;
  std::vector<int32_t> token_ids;
  std::optional<IncrementalDetokenizer> detokenizer;
  if (tokenizer && !options.json) detokenizer.emplace(*tokenizer);
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first_token;

  Status submitted = (*engine)->submit(std::move(request), [&](const GenerationOutput& out) {
    std::lock_guard lock(mutex);
    if (token_ids.empty() && !out.new_token_ids.empty()) first_token = std::chrono::steady_clock::now();
    for (int32_t id : out.new_token_ids) {
      token_ids.push_back(id);
      if (detokenizer) std::cout << detokenizer->push(id) << std::flush;
    }
    if (out.finish_reason != FinishReason::none) {
      last = out;
      done = true;
      done_cv.notify_all();
    }
  });
  if (!submitted.ok()) return report_error(submitted.error());
  {
    std::unique_lock lock(mutex);
    done_cv.wait(lock, [&] { return done; });
  }
  const auto end = std::chrono::steady_clock::now();
  (*engine)->stop();
  if (last.finish_reason == FinishReason::error) return report_error(make_error(ErrorCode::internal, last.error_message));

  const double seconds = std::chrono::duration<double>(end - start).count();
  const double decode_seconds = std::chrono::duration<double>(end - first_token).count();
  if (options.json) {
    nlohmann::json result{{"token_ids", token_ids},
                          {"finish_reason", to_string(last.finish_reason)},
                          {"num_prompt_tokens", last.num_prompt_tokens},
                          {"seconds", seconds}};
    if (tokenizer) result["text"] = tokenizer->decode(token_ids, /*skip_special_tokens=*/true);
    std::cout << result.dump() << "\n";
    return 0;
  }
  if (detokenizer) std::cout << detokenizer->flush();
  else
    for (int32_t id : token_ids) std::cout << id << " ";
  std::cout << "\n";
  std::cerr << token_ids.size() << " tokens in " << seconds << " s; "
            << (token_ids.size() > 1 ? double(token_ids.size() - 1) / decode_seconds : 0.0)
            << " tokens/s after the first (" << to_string(last.finish_reason) << ")\n";
  return 0;
}

}  // namespace troupe::cli

// troupe: serve large language models across GPUs and machines without Ray.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/config_file.hpp"
#include "runtime/logging.hpp"
#include "runtime/version.hpp"

namespace troupe::cli {

int report_error(const Error& error) {
  std::cerr << "troupe: error: " << error.message << "\n";
  return error.code == ErrorCode::invalid_argument || error.code == ErrorCode::not_found ? 2 : 1;
}

namespace {

// LeaderWorkerSet's variables are defaults for `troupe worker`.
void apply_lws_defaults(Config& config) {
  if (const char* leader = std::getenv("LWS_LEADER_ADDRESS"); leader && config.join.empty())
    config.join = std::string(leader) + ":" + std::to_string(config.cluster_port);
  if (const char* index = std::getenv("LWS_WORKER_INDEX"); index && config.worker_index < 0)
    config.worker_index = std::atoll(index);
}

bool is_subcommand(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == name) return true;
  return false;
}

int run(int argc, char** argv) {
  CLI::App app{"troupe: serve large language models across GPUs and machines without Ray"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1, 1);
  app.fallthrough(false);

  Config config;
  GenerateOptions generate_options;

  auto* serve = app.add_subcommand("serve", "run the whole engine and its HTTP API in one process");
  add_common_options(*serve, config);
  add_engine_options(*serve, config);
  add_http_options(*serve, config, "--port");
  serve->add_option("--pipeline-parallel-size,--pp", config.pipeline_parallel_size,
                    "stages, all in this process (over loopback UCX)")
      ->capture_default_str();
  serve->add_option("--tensor-parallel-size,--tp", config.tensor_parallel_size,
                    "devices per stage (GPUs over NCCL; on the CPU, thread ranks)")
      ->capture_default_str();

  auto* head = app.add_subcommand("head", "start a head node: registry, supervisor, router, HTTP API");
  add_common_options(*head, config);
  add_engine_options(*head, config);
  add_http_options(*head, config, "--http-port");
  add_cluster_options(*head, config);
  head->add_option("--port", config.cluster_port, "cluster port workers join")->capture_default_str();

  auto* worker = app.add_subcommand("worker", "join this machine to a head node");
  add_common_options(*worker, config);
  add_engine_options(*worker, config);
  worker->add_option("--join", config.join, "the head's HOST:PORT (default: $LWS_LEADER_ADDRESS)");
  worker->add_option("--token", config.token, "shared join token")->envname("TROUPE_TOKEN");
  worker->add_option("--worker-index", config.worker_index, "this worker's index (default: $LWS_WORKER_INDEX)");
  worker->add_flag("!--no-supervise", config.supervise, "do not restart the worker process when it crashes");

  auto* generate = app.add_subcommand("generate", "generate from one prompt on this machine");
  add_common_options(*generate, config);
  add_engine_options(*generate, config);
  add_generate_options(*generate, generate_options);

  TokenizeOptions tokenize_options;
  auto* tokenize = app.add_subcommand("tokenize", "encode text, or render and encode a chat, with the model's tokenizer");
  add_common_options(*tokenize, config);
  tokenize->add_option("--model", config.model, "Hugging Face model folder (tokenizer.json, tokenizer_config.json)");
  add_tokenize_options(*tokenize, tokenize_options);

  auto* bench = app.add_subcommand("bench", "drive a running server's HTTP API and report latency");
  add_common_options(*bench, config);
  add_http_options(*bench, config, "--port");
  ServingBenchmarkOptions bench_options;
  bench->add_option("--served-model-name", bench_options.model, "model name to send (default: the server's first)");
  bench->add_option("--num-prompts", bench_options.num_prompts, "requests in all")->capture_default_str();
  bench->add_option("--max-concurrency", bench_options.max_concurrency, "concurrent streams")->capture_default_str();
  bench->add_option("--input-len", bench_options.input_len, "prompt tokens")->capture_default_str();
  bench->add_option("--output-len", bench_options.output_len, "generated tokens")->capture_default_str();
  bench->add_option("--vocab-limit", bench_options.vocab_limit, "prompt ids drawn below this")->capture_default_str();
  bench->add_option("--timeout", bench_options.timeout_s, "seconds for one request")->capture_default_str();
  bench->add_option("--result-file", bench_options.out, "JSON output (default bench/results/serving_DATE.json)");
  bench->add_option("--device-label", bench_options.device_label, "what served the requests, for the JSON");

  if (argc > 1 && argv[1][0] != '-' && !is_subcommand(app, argv[1]))
    return report_error(make_error(ErrorCode::invalid_argument,
                                   std::string("unknown subcommand '") + argv[1] + "' (see --help)"));
  auto args = expand_config_file(argc, argv);
  if (!args.ok()) return report_error(args.error());
  std::vector<std::string> reversed(args->rbegin(), args->rend() - 1);
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "troupe: error: " << e.what() << " (see --help)\n";
    return 2;
  }

  if (worker->parsed()) apply_lws_defaults(config);
  if (Status status = config.validate(); !status.ok()) return report_error(status.error());
  log::set_level(config.log_level);

  if (serve->parsed()) return run_serve(config);
  if (head->parsed()) return run_head(config);
  if (worker->parsed()) return run_worker(config);
  if (generate->parsed()) return run_generate(config, generate_options);
  if (tokenize->parsed()) return run_tokenize(config, tokenize_options);
  return run_bench(config, bench_options);
}

}  // namespace
}  // namespace troupe::cli

int main(int argc, char** argv) {
  try {
    return troupe::cli::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "troupe: error: " << e.what() << "\n";
    return 1;
  }
}

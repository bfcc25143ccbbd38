#include "cli/command_line.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/config_file.hpp"
#include "cli/vllm_flags.hpp"
#include "cluster/address.hpp"
#include "runtime/version.hpp"

namespace troupe::cli {

int report_error(const Error& error) {
  std::cerr << "troupe: error: " << error.message << "\n";
  return error.code == ErrorCode::invalid_argument || error.code == ErrorCode::not_found ? 2 : 1;
}

namespace {

// $LWS_LEADER_ADDRESS is a host without a port: `--join` defaults to it with the cluster port.
// ($LWS_WORKER_INDEX is --worker-index's environment variable.)
void apply_lws_defaults(Config& config) {
  if (config.join.empty())
    config.join = cluster::lws_join_address(cluster::process_env(), config.cluster_port).value_or("");
}

bool is_subcommand(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == name) return true;
  return false;
}

}  // namespace

ParsedCommandLine parse_command_line(const std::vector<std::string>& argv) {
  ParsedCommandLine parsed;
  CommandLine& command = parsed.command;
  Config& config = command.config;

  CLI::App app{"troupe: serve large language models across GPUs and machines without Ray"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1, 1);
  app.fallthrough(false);

  VllmFlags vllm_flags;
  auto* serve = app.add_subcommand("serve", "run the whole engine and its HTTP API in one process");
  add_common_options(*serve, config);
  add_engine_options(*serve, config);
  serve->add_option("model_tag", config.model, "the model folder, as `vllm serve MODEL` (or --model)");
  add_vllm_serve_options(*serve, config, vllm_flags);
  add_http_options(*serve, config, "--port");
  add_http_security_options(*serve, config);
  add_lifecycle_options(*serve, config);
  serve->add_option("--pipeline-parallel-size,--pp", config.pipeline_parallel_size,
                    "stages, all in this process (over loopback UCX)")
      ->capture_default_str();
  serve->add_option("--tensor-parallel-size,--tp", config.tensor_parallel_size,
                    "devices per stage (GPUs over NCCL; on the CPU, thread ranks)")
      ->capture_default_str();

  auto* head = app.add_subcommand("head", "start a head node: registry, supervisor, router, HTTP API");
  add_common_options(*head, config);
  add_engine_options(*head, config);
  add_vllm_serve_options(*head, config, vllm_flags);
  add_http_options(*head, config, "--http-port");
  add_http_security_options(*head, config);
  add_lifecycle_options(*head, config);
  add_cluster_options(*head, config);
  add_head_options(*head, config);
  add_heartbeat_options(*head, config);
  add_cluster_tls_options(*head, config);

  auto* worker = app.add_subcommand("worker", "join this machine to a head node");
  add_common_options(*worker, config);
  add_engine_options(*worker, config);
  add_served_model_name_option(*worker, config);
  add_worker_options(*worker, config);
  add_heartbeat_options(*worker, config);
  add_cluster_tls_options(*worker, config);

  auto* generate = app.add_subcommand("generate", "generate from one prompt on this machine");
  add_common_options(*generate, config);
  add_engine_options(*generate, config);
  add_served_model_name_option(*generate, config);
  generate->add_option("--tensor-parallel-size,--tp", config.tensor_parallel_size,
                       "devices (GPUs over NCCL; on the CPU, thread ranks)")
      ->capture_default_str();
  add_generate_options(*generate, command.generate);

  auto* tokenize = app.add_subcommand("tokenize", "encode text, or render and encode a chat, with the model's tokenizer");
  add_common_options(*tokenize, config);
  tokenize->add_option("--model", config.model, "Hugging Face model folder (tokenizer.json, tokenizer_config.json)");
  add_tokenize_options(*tokenize, command.tokenize);

  auto* bench = app.add_subcommand("bench", "drive a running server's HTTP API and report latency");
  add_common_options(*bench, config);
  add_http_options(*bench, config, "--port");
  ServingBenchmarkOptions& bench_options = command.bench;
  bench->add_option("--served-model-name", bench_options.model, "model name to send (default: the server's first)");
  bench->add_option("--num-prompts", bench_options.num_prompts, "requests in all")->capture_default_str();
  bench->add_option("--max-concurrency", bench_options.max_concurrency, "concurrent streams")->capture_default_str();
  bench->add_option("--input-len", bench_options.input_len, "prompt tokens")->capture_default_str();
  bench->add_option("--output-len", bench_options.output_len, "generated tokens")->capture_default_str();
  bench->add_option("--vocab-limit", bench_options.vocab_limit, "prompt ids drawn below this")->capture_default_str();
  bench->add_option("--timeout", bench_options.timeout_s, "seconds for one request")->capture_default_str();
  bench->add_option("--result-file", bench_options.out, "JSON output (default bench/results/serving_DATE.json)");
  bench->add_option("--device-label", bench_options.device_label, "what served the requests, for the JSON");

  // NOTE: subcommands share Config's fields, and CLI11 reads an option's environment variable
  // for every subcommand without a parse-complete callback, used or not: `troupe serve --api-key
  // K` would end with $TROUPE_API_KEY from head's --api-key. With a callback, only the subcommand
  // given reads the environment.
  for (CLI::App* sub : {serve, head, worker, generate, tokenize, bench}) sub->parse_complete_callback([] {});

  if (argv.size() > 1 && argv[1][0] != '-' && !is_subcommand(app, argv[1])) {
    parsed.exit_code = report_error(
        make_error(ErrorCode::invalid_argument, "unknown subcommand '" + argv[1] + "' (see --help)"));
    return parsed;
  }
  auto args = expand_config_file(argv);
  if (!args.ok()) {
    parsed.exit_code = report_error(args.error());
    return parsed;
  }
  const std::vector<std::string> normalized = normalize_vllm_args(args.value());
  std::vector<std::string> reversed(normalized.rbegin(), normalized.rend() - 1);
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    parsed.exit_code = app.exit(e);
    return parsed;
  } catch (const CLI::CallForAllHelp& e) {
    parsed.exit_code = app.exit(e);
    return parsed;
  } catch (const CLI::CallForVersion& e) {
    parsed.exit_code = app.exit(e);
    return parsed;
  } catch (const CLI::ParseError& e) {
    std::cerr << "troupe: error: " << e.what() << " (see --help)\n";
    parsed.exit_code = 2;
    return parsed;
  }

  if (worker->parsed()) {
    apply_lws_defaults(config);
    // Given on the command line or in --config: this worker's own, over the head's.
    if (worker->count("--gpu-memory-utilization") > 0) config.worker_gpu_memory_utilization = config.gpu_memory_utilization;
  }
  if (serve->parsed() || head->parsed()) {
    Result<std::vector<std::string>> warnings = check_vllm_flags(serve->parsed() ? *serve : *head, config, vllm_flags);
    if (!warnings.ok()) {
      parsed.exit_code = report_error(warnings.error());
      return parsed;
    }
    for (const std::string& warning : warnings.value()) std::cerr << "troupe: warning: " << warning << "\n";
    command.warnings = warnings.value();
  }
  if (Status status = config.validate(); !status.ok()) {
    parsed.exit_code = report_error(status.error());
    return parsed;
  }
  command.subcommand = serve->parsed()      ? Subcommand::serve
                       : head->parsed()     ? Subcommand::head
                       : worker->parsed()   ? Subcommand::worker
                       : generate->parsed() ? Subcommand::generate
                       : tokenize->parsed() ? Subcommand::tokenize
                                            : Subcommand::bench;
  return parsed;
}

}  // namespace troupe::cli

// troupe: serve large language models across GPUs and machines without Ray.
#include <iostream>

#include "cli/command_line.hpp"
#include "cli/commands.hpp"
#include "runtime/logging.hpp"

namespace troupe::cli {
namespace {

int run(int argc, char** argv) {
  ParsedCommandLine parsed = parse_command_line(std::vector<std::string>(argv, argv + argc));
  if (parsed.exit_code) return *parsed.exit_code;
  const CommandLine& command = parsed.command;
  log::set_level(command.config.log_level);
  if (std::string error; !command.config.log_file.empty() && !log::set_file(command.config.log_file, &error)) {
    std::cerr << "troupe: error: " << error << "\n";
    return 1;
  }
  switch (command.subcommand) {
    case Subcommand::serve: return run_serve(command.config);
    case Subcommand::head: return run_head(command.config);
    case Subcommand::worker: return run_worker(command.config);
    case Subcommand::generate: return run_generate(command.config, command.generate);
    case Subcommand::tokenize: return run_tokenize(command.config, command.tokenize);
    case Subcommand::bench: return run_bench(command.config, command.bench);
  }
  return 1;
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

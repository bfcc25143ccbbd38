#pragma once
// The `troupe` command line: subcommands, their flags, the --config file spliced in, the
// LeaderWorkerSet defaults, Config::validate(). No subcommand runs here, so tests parse freely.
#include <optional>
#include <string>
#include <vector>

#include "cli/options.hpp"
#include "cli/serving_benchmark.hpp"
#include "runtime/config.hpp"

namespace troupe::cli {

enum class Subcommand { serve, head, worker, generate, tokenize, bench };

struct CommandLine {
  Subcommand subcommand = Subcommand::serve;
  Config config;
  GenerateOptions generate;
  TokenizeOptions tokenize;
  ServingBenchmarkOptions bench;
  std::vector<std::string> warnings;  // vLLM flags accepted and ignored (printed already)
};

struct ParsedCommandLine {
  std::optional<int> exit_code;  // set: --help, --version or an error was printed; exit with it
  CommandLine command;           // otherwise: what to run
};

// `args` is argv (args[0] the program). Help, version and errors are printed here.
ParsedCommandLine parse_command_line(const std::vector<std::string>& args);

// Prints "troupe: error: MESSAGE" on one line to stderr; returns the exit code for it.
int report_error(const Error& error);

}  // namespace troupe::cli

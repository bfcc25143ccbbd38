#pragma once
// `vllm serve` command lines, drop-in: what troupe accepts under vLLM's spelling beyond its own
// flags. docs/vllm-flags.md lists every vLLM flag with troupe's answer.
//
//   argv --normalize_vllm_args--> -tp/-pp spelled as CLI11 can parse --CLI11 (with the flags of
//   add_vllm_serve_options)--> check_vllm_flags: warnings for ignored flags, errors for refused ones
#include <string>
#include <vector>

#include "runtime/config.hpp"
#include "runtime/result.hpp"

namespace CLI {
class App;
}

namespace troupe::cli {

// vLLM's short spellings CLI11 cannot declare ("-tp 8", "-pp=2", "-tp8"): rewritten to the
// long flags; of several --served-model-name occurrences only the last stays (the command line's
// over the --config file's). Everything else is left as it is.
std::vector<std::string> normalize_vllm_args(std::vector<std::string> args);

// What vLLM-only flags left after parsing: values of harmless flags troupe ignores, refused ones.
struct VllmFlags {
  std::vector<std::string> ignored_given;   // "--flag" of each ignored flag given
  std::vector<std::pair<std::string, std::string>> refused_given;  // (flag, value)
  std::vector<std::string> ignored_values;  // storage the ignored options write to
  std::vector<std::string> refused_values;  // storage the refused options write to
  std::vector<std::string> served_model_names;
};

// serve and head: --served-model-name (several names), --chat-template, --generation-config,
// --override-generation-config, --seed, --disable-log-requests / --enable-log-requests, and the
// ignored and refused vLLM flags.
void add_vllm_serve_options(CLI::App& app, Config& config, VllmFlags& flags);

// After parsing: the first served name becomes Config::served_model_name, ignored flags give
// one warning each (returned, and printed by the caller), refused flags an error naming the flag.
Result<std::vector<std::string>> check_vllm_flags(const CLI::App& app, Config& config, const VllmFlags& flags);

}  // namespace troupe::cli

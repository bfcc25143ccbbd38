#pragma once
// `--config FILE`: a TOML file whose keys are a subcommand's long flag names. Its entries become
// flags placed before the user's own, so the command line overrides the file.
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::cli {

// argv with the config file's entries spliced in after the subcommand. Errors name the file.
Result<std::vector<std::string>> expand_config_file(std::vector<std::string> args);

}  // namespace troupe::cli

// Subcommands whose engines land with later issues (#3 generate, #5 bench).
#include "cli/commands.hpp"

namespace troupe::cli {

int run_generate(const Config&, const GenerateOptions&) {
  return report_error(make_error(ErrorCode::unsupported, "`troupe generate` needs the CPU engine (issue #3)"));
}
int run_bench(const Config&) {
  return report_error(make_error(ErrorCode::unsupported, "`troupe bench` needs the HTTP API (issue #5)"));
}

}  // namespace troupe::cli

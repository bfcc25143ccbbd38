#pragma once
// One function per subcommand. Each returns the process exit code and prints its own errors.
#include "cli/command_line.hpp"
#include "cli/options.hpp"
#include "cli/serving_benchmark.hpp"
#include "engine/sampling_params.hpp"
#include "runtime/config.hpp"

namespace troupe::cli {

int run_serve(const Config& config);
int run_head(const Config& config);
int run_worker(const Config& config);
int run_generate(const Config& config, const GenerateOptions& options);
int run_generate_batch(const Config& config, const GenerateOptions& options);  // --messages-jsonl
// The request sampling parameters that `troupe generate`'s flags set.
SamplingParams sampling_params(const GenerateOptions& options);
int run_bench(const Config& config, const ServingBenchmarkOptions& options);
int run_tokenize(const Config& config, const TokenizeOptions& options);

}  // namespace troupe::cli

// A fan-out to replicas: every stage host serves `normalize` (x / ||x||_2); the coordinator deals
// the inputs round-robin to one replica per host, which work in parallel.
//
//   replica_fan_out --host-stage [--port P]                  (run once per replica)
//   replica_fan_out --connect HOST:P0,HOST:P1,... --input FILE [--timeout-ms 5000]
//
// Each replica logs `replica pid N normalized M values` on stderr per input; the coordinator
// prints `output K ...` per input, in input order.
#include <unistd.h>

#include <chrono>
#include <cmath>

#include "../common/example_io.hpp"

namespace {

using troupe::api::Tensor;

troupe::Result<Tensor> normalize(const Tensor& input) {
  double sum = 0.0;
  for (float value : input.data) sum += double{value} * value;
  if (sum == 0.0) return troupe::make_error(troupe::ErrorCode::invalid_argument, "normalize: the input has zero norm");
  const double scale = 1.0 / std::sqrt(sum);
  Tensor output = input;
  for (float& value : output.data) value = static_cast<float>(value * scale);
  std::fprintf(stderr, "replica pid %d normalized %zu values\n", static_cast<int>(::getpid()), input.data.size());
  return output;
}

int coordinate(const examples::Flags& flags) {
  const auto hosts = examples::split(examples::flag(flags, "connect", ""), ',');
  auto inputs = examples::read_inputs(examples::flag(flags, "input", ""));
  if (!inputs.ok()) return examples::fail(inputs.error().message);
  const std::chrono::milliseconds timeout(examples::int_flag(flags, "timeout-ms", 5000));
  troupe::api::PipelineOptions options;
  options.connect_timeout = timeout;
  auto replicas = troupe::api::Replicas::create(hosts, "normalize", options);
  if (!replicas.ok()) return examples::fail(replicas.error().message);
  auto outputs = replicas->run_all(*inputs, timeout);
  if (!outputs.ok()) return examples::fail(outputs.error().message);
  for (size_t k = 0; k < outputs->size(); ++k) examples::print_output(k, (*outputs)[k]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const examples::Flags flags = examples::parse_flags(argc, argv);
  if (flags.count("host-stage")) {
    troupe::Status registered = troupe::api::register_stage("normalize", normalize);
    if (!registered.ok()) return examples::fail(registered.error().message);
    troupe::api::StageHostOptions options;
    options.port = static_cast<uint16_t>(examples::int_flag(flags, "port", 0));
    return troupe::api::run_stage_host(options);
  }
  if (flags.count("connect")) return coordinate(flags);
  std::fprintf(stderr, "usage: %s --host-stage [--port P]\n       %s --connect HOST:P,... --input FILE [--timeout-ms MS]\n",
               argv[0], argv[0]);
  return flags.count("help") ? 0 : 2;
}

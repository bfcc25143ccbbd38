// A two-stage pipeline across two processes: stage 0 computes y = 2x + 1, stage 1 a softmax.
//
//   two_stage_pipeline --host-stage [--port P]               (run twice: the two stage hosts)
//   two_stage_pipeline --connect HOST:P0,HOST:P1 --input FILE [--stages affine,softmax]
//                      [--timeout-ms 5000] [--repeat 1] [--interval-ms 0]
//
// The coordinator sends every input line through the pipeline (`--repeat` passes) and prints
// `output K ...` per result; on the first error it prints `error: ...` and exits 1.
#include <chrono>
#include <cmath>
#include <thread>

#include "../common/example_io.hpp"

namespace {

using troupe::api::Tensor;

troupe::Result<Tensor> affine(const Tensor& input) {
  Tensor output = input;
  for (float& value : output.data) value = 2.0f * value + 1.0f;
  return output;
}

// Softmax over all values (inputs are 1-D), max-subtracted.
troupe::Result<Tensor> softmax(const Tensor& input) {
  if (input.data.empty()) return troupe::make_error(troupe::ErrorCode::invalid_argument, "softmax of an empty tensor");
  float max_value = input.data[0];
  for (float value : input.data) max_value = std::max(max_value, value);
  Tensor output = input;
  double sum = 0.0;
  for (float& value : output.data) {
    value = std::exp(value - max_value);
    sum += value;
  }
  for (float& value : output.data) value = static_cast<float>(value / sum);
  return output;
}

troupe::Result<Tensor> always_fail(const Tensor&) {
  return troupe::make_error(troupe::ErrorCode::invalid_argument, "the 'fail' stage rejects every input");
}

int coordinate(const examples::Flags& flags) {
  const auto hosts = examples::split(examples::flag(flags, "connect", ""), ',');
  const auto functions = examples::split(examples::flag(flags, "stages", "affine,softmax"), ',');
  if (hosts.size() != functions.size())
    return examples::fail("--connect names " + std::to_string(hosts.size()) + " hosts but --stages " +
                          std::to_string(functions.size()) + " functions");
  auto inputs = examples::read_inputs(examples::flag(flags, "input", ""));
  if (!inputs.ok()) return examples::fail(inputs.error().message);
  const std::chrono::milliseconds timeout(examples::int_flag(flags, "timeout-ms", 5000));
  const std::chrono::milliseconds interval(examples::int_flag(flags, "interval-ms", 0));
  const int64_t num_passes = examples::int_flag(flags, "repeat", 1);

  std::vector<troupe::api::StageSpec> stages;
  for (size_t i = 0; i < hosts.size(); ++i) stages.push_back({hosts[i], functions[i]});
  troupe::api::PipelineOptions options;
  options.connect_timeout = timeout;
  auto pipeline = troupe::api::Pipeline::create(stages, options);
  if (!pipeline.ok()) return examples::fail(pipeline.error().message);

  int64_t num_runs = 0;
  for (int64_t pass = 0; pass < num_passes; ++pass) {
    for (size_t k = 0; k < inputs->size(); ++k) {
      auto output = pipeline->run((*inputs)[k], timeout);
      if (!output.ok()) return examples::fail(output.error().message + " (after " + std::to_string(num_runs) + " runs)");
      examples::print_output(k, *output);
      ++num_runs;
      if (interval.count() > 0) std::this_thread::sleep_for(interval);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const examples::Flags flags = examples::parse_flags(argc, argv);
  if (flags.count("host-stage")) {
    for (auto [name, function] : {std::pair{"affine", &affine}, {"softmax", &softmax}, {"fail", &always_fail}}) {
      troupe::Status registered = troupe::api::register_stage(name, function);
      if (!registered.ok()) return examples::fail(registered.error().message);
    }
    troupe::api::StageHostOptions options;
    options.port = static_cast<uint16_t>(examples::int_flag(flags, "port", 0));
    return troupe::api::run_stage_host(options);
  }
  if (flags.count("connect")) return coordinate(flags);
  std::fprintf(stderr,
               "usage: %s --host-stage [--port P]\n"
               "       %s --connect HOST:P0,HOST:P1 --input FILE [--stages affine,softmax] [--timeout-ms MS]\n"
               "          [--repeat N] [--interval-ms MS]\n",
               argv[0], argv[0]);
  return flags.count("help") ? 0 : 2;
}

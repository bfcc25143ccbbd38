// Replicas: one single-stage Pipeline per host; inputs dealt round-robin, run in parallel.
#include "troupe/replicas.hpp"

#include <atomic>
#include <optional>
#include <thread>

namespace troupe::api {

struct Replicas::Impl {
  std::vector<Pipeline> replicas;
  std::vector<std::string> addresses;  // [num_replicas]
  std::atomic<uint64_t> next{0};
};

Replicas::Replicas(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Replicas::Replicas(Replicas&& other) noexcept = default;
Replicas& Replicas::operator=(Replicas&& other) noexcept = default;
Replicas::~Replicas() = default;
int64_t Replicas::num_replicas() const { return static_cast<int64_t>(impl_->replicas.size()); }

Result<Replicas> Replicas::create(const std::vector<std::string>& addresses, const std::string& function,
                                  const PipelineOptions& options) {
  if (addresses.empty()) return make_error(ErrorCode::invalid_argument, "replicas: no stage host addresses");
  auto impl = std::make_unique<Impl>();
  for (size_t i = 0; i < addresses.size(); ++i) {
    auto pipeline = Pipeline::create({StageSpec{addresses[i], function}}, options);
    if (!pipeline.ok())
      return make_error(pipeline.error().code, "replica " + std::to_string(i) + ": " + pipeline.error().message);
    impl->replicas.push_back(std::move(*pipeline));
    impl->addresses.push_back(addresses[i]);
  }
  return Replicas(std::move(impl));
}

Result<Tensor> Replicas::run(const Tensor& input, std::chrono::milliseconds timeout) {
  const size_t r = impl_->next.fetch_add(1) % impl_->replicas.size();
  auto output = impl_->replicas[r].run(input, timeout);
  if (!output.ok())
    return make_error(output.error().code, "replica " + std::to_string(r) + ": " + output.error().message);
  return output;
}

Result<std::vector<Tensor>> Replicas::run_all(const std::vector<Tensor>& inputs, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  const size_t num_replicas = impl_->replicas.size();
  std::vector<std::optional<Result<Tensor>>> outputs(inputs.size());  // [num_inputs]
  std::vector<std::thread> workers;
  for (size_t r = 0; r < num_replicas && r < inputs.size(); ++r) {
    workers.emplace_back([&, r] {
      for (size_t k = r; k < inputs.size(); k += num_replicas) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        outputs[k] = impl_->replicas[r].run(inputs[k], std::max(left, std::chrono::milliseconds(1)));
        if (!outputs[k]->ok()) return;  // this replica stops; the others finish their share
      }
    });
  }
  for (auto& worker : workers) worker.join();
  std::vector<Tensor> results;
  results.reserve(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    const size_t r = k % num_replicas;
    if (!outputs[k].has_value())
      return make_error(ErrorCode::unavailable, "input " + std::to_string(k) + " not run: replica " +
                                                    std::to_string(r) + " (" + impl_->addresses[r] + ") failed earlier");
    if (!outputs[k]->ok())
      return make_error(outputs[k]->error().code, "input " + std::to_string(k) + " on replica " + std::to_string(r) +
                                                      " (" + impl_->addresses[r] + "): " + outputs[k]->error().message);
    results.push_back(std::move(outputs[k]->value()));
  }
  return results;
}

}  // namespace troupe::api

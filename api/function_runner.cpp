#include "api/function_runner.hpp"

#include <cstdio>
#include <exception>
#include <vector>

#include "api/tensor_frame.hpp"

namespace troupe::api::detail {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr milliseconds kPollStep{200};  // how often a waiting stage checks for stop()

TensorChannelOptions channel_options(const std::string& transports) {
  TensorChannelOptions options;
  options.ucx.transports = transports;
  return options;
}

// The stage function on one tensor; exceptions become errors.
Result<Tensor> apply(const StageFunction& function, const Tensor& input, const std::string& label) {
  try {
    Result<Tensor> output = function(input);
    if (!output.ok()) return make_error(output.error().code, label + ": " + output.error().message);
    Status valid = output->validate();
    if (!valid.ok()) return make_error(ErrorCode::internal, label + " returned a bad tensor: " + valid.error().message);
    return output;
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, label + " threw: " + e.what());
  } catch (...) {
    return make_error(ErrorCode::internal, label + " threw a non-standard exception");
  }
}

}  // namespace

Result<std::unique_ptr<FunctionRunner>> FunctionRunner::start(StageFunction function, FunctionRunnerOptions options) {
  auto listener = TensorListener::listen(options.bind_host, 0, channel_options(options.ucx_transports));
  if (!listener.ok())
    return make_error(listener.error().code, options.label + ": cannot open its input: " + listener.error().message);
  std::unique_ptr<FunctionRunner> runner(new FunctionRunner(std::move(function), std::move(options), std::move(*listener)));
  runner->thread_ = std::thread([r = runner.get()] { r->loop(); });
  return runner;
}

FunctionRunner::FunctionRunner(StageFunction function, FunctionRunnerOptions options, TensorListener listener)
    : function_(std::move(function)), options_(std::move(options)), listener_(std::move(listener)) {
  input_port_ = listener_->port();
}

FunctionRunner::~FunctionRunner() { stop(); }

void FunctionRunner::set_output(std::string host, uint16_t port) {
  {
    std::lock_guard lock(mutex_);
    output_ = std::make_pair(std::move(host), port);
  }
  output_set_.notify_all();
}

void FunctionRunner::stop() {
  stop_.store(true);
  output_set_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<TensorChannel> FunctionRunner::accept_input() {
  const auto deadline = Clock::now() + options_.setup_timeout;
  while (!stop_.load()) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left <= milliseconds(0)) break;
    auto channel = listener_->accept(std::min(left, kPollStep));
    if (channel.ok() || channel.error().code != ErrorCode::timeout) return channel;
  }
  return make_error(ErrorCode::timeout, "no coordinator connected to its input within " +
                                            std::to_string(options_.setup_timeout.count()) + " ms");
}

Result<TensorChannel> FunctionRunner::connect_output() {
  std::pair<std::string, uint16_t> output;
  {
    std::unique_lock lock(mutex_);
    const bool set = output_set_.wait_for(lock, options_.setup_timeout, [&] { return output_ || stop_.load(); });
    if (stop_.load()) return make_error(ErrorCode::unavailable, "stopped");
    if (!set) return make_error(ErrorCode::timeout, "no output address within " +
                                                        std::to_string(options_.setup_timeout.count()) + " ms");
    output = *output_;
  }
  return TensorChannel::connect(output.first, output.second, options_.setup_timeout,
                                channel_options(options_.ucx_transports));
}

Status FunctionRunner::serve(TensorChannel& input, TensorChannel& output) {
  std::vector<uint8_t> buffer;
  for (uint64_t tag = 0; !stop_.load(); ++tag) {
    Result<uint64_t> size = make_error(ErrorCode::timeout, "");
    while (!stop_.load()) {
      size = input.probe(tag, kPollStep);
      if (size.ok() || size.error().code != ErrorCode::timeout) break;
    }
    if (stop_.load()) return Status::success();
    // Upstream closed or died: the pipeline ends here, and closing our output tells downstream.
    if (!size.ok()) return size.error().code == ErrorCode::unavailable ? Status::success() : Status(size.error());
    buffer.resize(*size);
    auto received = input.recv(tag, buffer.data(), buffer.size(), options_.io_timeout);
    if (!received.ok()) return received.error();
    Result<Tensor> tensor = decode_frame(buffer.data(), *received);
    // An upstream error passes through unchanged; the function runs only on tensors.
    std::vector<uint8_t> frame = tensor.ok() ? std::vector<uint8_t>{} : encode_error(tensor.error());
    if (tensor.ok()) {
      Result<Tensor> result = apply(function_, *tensor, options_.label);
      frame = result.ok() ? encode_tensor(*result) : encode_error(result.error());
    }
    TROUPE_TRY(output.send(tag, frame.data(), frame.size(), options_.io_timeout));
  }
  return Status::success();
}

void FunctionRunner::loop() {
  auto input = accept_input();
  listener_.reset();
  Status status = Status::success();
  if (!input.ok()) {
    status = input.error();
  } else {
    auto output = connect_output();
    if (!output.ok())
      status = make_error(output.error().code, "cannot connect its output: " + output.error().message);
    else
      status = serve(*input, *output);
  }
  if (!status.ok() && !stop_.load())
    std::fprintf(stderr, "troupe: %s stopped: %s\n", options_.label.c_str(), status.error().message.c_str());
  done_.store(true);
}

}  // namespace troupe::api::detail

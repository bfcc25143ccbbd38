// Pipeline: reach the hosts, start and wire the stages, then run tensors through them.
#include "troupe/pipeline.hpp"

#include <unistd.h>

#include <mutex>
#include <optional>
#include <thread>

#include "api/api_messages.hpp"
#include "api/caf_runtime.hpp"
#include "api/tensor_frame.hpp"
#include "cluster/address.hpp"
#include "pipeline/tensor_channel.hpp"

namespace troupe::api {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr milliseconds kPollStep{50};     // how often a waiting run() checks for lost hosts
constexpr milliseconds kLossGrace{500};   // after a channel error, wait this long for the host's name

// The first stage host lost, as reported by CAF (process gone, or heartbeats missed).
struct HostWatch {
  std::mutex mutex;
  std::string lost;
  void set(const std::string& what) {
    std::lock_guard lock(mutex);
    if (lost.empty()) lost = what;
  }
  std::string get() {
    std::lock_guard lock(mutex);
    return lost;
  }
};

milliseconds left_until(Clock::time_point deadline) {
  return std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()), milliseconds(0));
}

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

std::string local_host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "127.0.0.1";
  return name;
}

}  // namespace

struct Pipeline::Impl {
  std::shared_ptr<detail::CafRuntime> runtime;
  std::vector<StageSpec> specs;
  std::vector<cluster::HostPort> addresses;  // [num_stages]
  std::vector<std::string> labels;           // [num_stages]
  std::vector<caf::actor> hosts;             // [num_stages]
  std::vector<uint64_t> stage_ids;           // [num_stages], 0 = not started
  std::shared_ptr<HostWatch> watch = std::make_shared<HostWatch>();
  std::optional<TensorChannel> input;   // to stage 0
  std::optional<TensorChannel> output;  // from the last stage
  uint64_t next_tag = 0;
  std::vector<uint64_t> abandoned_tags;  // runs that timed out: their late results are dropped
  mutable std::mutex mutex;
  std::string broken;

  ~Impl() {
    if (input) (void)input->close(milliseconds(100));
    // The stages close in turn; wait (briefly) for the last one's goodbye so that our end of the
    // channel has nothing in flight when it goes.
    if (input && output) (void)output->probe(next_tag, milliseconds(200));
    for (size_t i = 0; i < hosts.size(); ++i)
      if (hosts[i] && stage_ids[i] != 0) caf::anon_send(hosts[i], detail::api_stop_stage{stage_ids[i]});
    input.reset();
    output.reset();
    hosts.clear();
  }

  // The pipeline can no longer run: say why, naming the lost host when CAF reports one soon.
  Error break_with(const Error& error, const std::string& during, Clock::time_point deadline) {
    const auto grace_end = std::min(deadline, Clock::now() + kLossGrace);
    std::string lost = watch->get();
    while (lost.empty() && Clock::now() < grace_end) {
      std::this_thread::sleep_for(milliseconds(20));
      lost = watch->get();
    }
    std::string why = error.message;
    if (!lost.empty()) why = lost == error.message ? lost : lost + " (" + error.message + ")";
    broken = "pipeline broken " + during + ": " + why;
    input.reset();
    output.reset();
    return make_error(ErrorCode::unavailable, broken);
  }

  Status setup(const PipelineOptions& options);

  // Receives and drops the late results of timed-out runs that have arrived by now.
  void drop_late_results() {
    std::vector<uint8_t> scratch;
    for (auto it = abandoned_tags.begin(); it != abandoned_tags.end();) {
      auto size = output->probe(*it, milliseconds(0));
      if (!size.ok()) {
        ++it;
        continue;
      }
      scratch.resize(*size);
      (void)output->recv(*it, scratch.data(), scratch.size(), milliseconds(100));
      it = abandoned_tags.erase(it);
    }
  }
};

Status Pipeline::Impl::setup(const PipelineOptions& options) {
  auto& system = runtime->system();
  const auto timeout = options.connect_timeout;
  const TensorChannelOptions channel_options{UcxOptions{options.ucx_transports}};
  bool all_local = true;
  // 1. Reach every host; watch it for loss.
  for (size_t i = 0; i < specs.size(); ++i) {
    auto address = cluster::parse_host_port(specs[i].address);
    if (!address.ok()) return make_error(ErrorCode::invalid_argument, "stage " + std::to_string(i) + ": " + address.error().message);
    all_local = all_local && is_loopback(address->host);
    labels.push_back("stage " + std::to_string(i) + " '" + specs[i].function + "' on " + address->to_string());
    auto host = detail::connect_remote(system, address->host, address->port, timeout);
    if (!host.ok()) return make_error(host.error().code, labels.back() + ": " + host.error().message);
    const std::string label = labels.back();
    std::weak_ptr<HostWatch> weak = watch;
    (*host)->attach_functor([weak, label](const caf::error& reason) {
      if (auto w = weak.lock()) w->set("stage host of " + label + " was lost (" + caf::to_string(reason) + ")");
    });
    addresses.push_back(*address);
    hosts.push_back(*host);
  }
  // 2. Start the stages; each opens its tensor input.
  std::vector<int64_t> ports;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto spawned = detail::ask<detail::api_stage_spawned>(
        system, hosts[i], timeout, detail::api_spawn_stage{specs[i].function, labels[i], timeout.count()},
        labels[i] + ": start");
    if (!spawned.ok()) return spawned.error();
    if (!spawned->ok) return make_error(ErrorCode::invalid_argument, spawned->reason);
    stage_ids[i] = spawned->stage_id;
    ports.push_back(spawned->input_port);
  }
  // 3. Wire stage i -> i+1 and the last stage back here.
  auto back = TensorListener::listen("0.0.0.0", 0, channel_options);
  if (!back.ok()) return make_error(back.error().code, "cannot open the pipeline's result input: " + back.error().message);
  std::string callback = options.callback_host;
  if (callback.empty()) callback = all_local ? "127.0.0.1" : local_host_name();
  for (size_t i = 0; i < specs.size(); ++i) {
    const bool last = i + 1 == specs.size();
    detail::api_connect_output wire{stage_ids[i], last ? callback : addresses[i + 1].host,
                                    last ? int64_t{back->port()} : ports[i + 1]};
    auto reply = detail::ask<detail::api_reply>(system, hosts[i], timeout, wire, labels[i] + ": wire its output");
    if (!reply.ok()) return reply.error();
    if (!reply->ok) return make_error(ErrorCode::internal, labels[i] + ": wire its output: " + reply->reason);
  }
  // 4. Connect to stage 0; the stages connect onwards; the last one reaches us.
  auto first = TensorChannel::connect(addresses[0].host, static_cast<uint16_t>(ports[0]), timeout, channel_options);
  if (!first.ok()) return make_error(first.error().code, labels[0] + ": connect its input: " + first.error().message);
  input.emplace(std::move(*first));
  auto last = back->accept(timeout);
  if (!last.ok())
    return make_error(last.error().code, labels.back() + " did not connect back to " + callback + ":" +
                                             std::to_string(back->port()) + ": " + last.error().message +
                                             (watch->get().empty() ? "" : "; " + watch->get()));
  output.emplace(std::move(*last));
  return Status::success();
}

Result<Pipeline> Pipeline::create(const std::vector<StageSpec>& stages, const PipelineOptions& options) {
  if (stages.empty()) return make_error(ErrorCode::invalid_argument, "a pipeline needs at least one stage");
  auto impl = std::make_unique<Impl>();
  impl->runtime = detail::CafRuntime::acquire({options.heartbeat_interval, options.heartbeat_timeout});
  impl->specs = stages;
  impl->stage_ids.assign(stages.size(), 0);
  Status status = impl->setup(options);
  if (!status.ok()) return status.error();  // ~Impl stops the stages that started
  return Pipeline(std::move(impl));
}

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::Pipeline(Pipeline&& other) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&& other) noexcept = default;
Pipeline::~Pipeline() = default;
int64_t Pipeline::num_stages() const { return static_cast<int64_t>(impl_->specs.size()); }

std::string Pipeline::broken_reason() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->broken;
}

Result<Tensor> Pipeline::run(const Tensor& input, milliseconds timeout) {
  Impl& p = *impl_;
  std::lock_guard lock(p.mutex);
  if (!p.broken.empty()) return make_error(ErrorCode::unavailable, p.broken);
  Status valid = input.validate();
  if (!valid.ok()) return make_error(ErrorCode::invalid_argument, "pipeline input: " + valid.error().message);
  const auto deadline = Clock::now() + timeout;
  const uint64_t tag = p.next_tag++;
  const std::vector<uint8_t> frame = detail::encode_tensor(input);
  Status sent = p.input->send(tag, frame.data(), frame.size(), left_until(deadline));
  if (!sent.ok()) return p.break_with(sent.error(), "sending to " + p.labels.front(), deadline);
  Result<uint64_t> size = make_error(ErrorCode::timeout, "");
  while (true) {
    const std::string lost = p.watch->get();
    if (!lost.empty()) return p.break_with(make_error(ErrorCode::unavailable, lost), "during a run", deadline);
    const milliseconds left = left_until(deadline);
    if (left <= milliseconds(0)) {
      p.abandoned_tags.push_back(tag);
      return make_error(ErrorCode::timeout, "pipeline run timed out after " + std::to_string(timeout.count()) +
                                                " ms waiting for " + p.labels.back() + " (no stage host reported lost)");
    }
    if (!p.abandoned_tags.empty()) p.drop_late_results();
    size = p.output->probe(tag, std::min(left, kPollStep));
    if (size.ok()) break;
    if (size.error().code != ErrorCode::timeout)
      return p.break_with(size.error(), "waiting for " + p.labels.back(), deadline);
  }
  std::vector<uint8_t> buffer(*size);
  auto received = p.output->recv(tag, buffer.data(), buffer.size(), std::max(left_until(deadline), milliseconds(1)));
  if (!received.ok()) return p.break_with(received.error(), "receiving from " + p.labels.back(), deadline);
  if (!p.abandoned_tags.empty()) p.drop_late_results();
  return detail::decode_frame(buffer.data(), *received);
}

}  // namespace troupe::api

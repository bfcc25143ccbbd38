#include "runtime/process_collective.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

namespace troupe {
namespace {

using Clock = std::chrono::steady_clock;

enum class Op : uint64_t { all_reduce_sum = 1, all_gather = 2 };

struct Header {
  uint64_t op = 0;
  uint64_t numel = 0;  // floats that follow
};

class ProcessCollective final : public Collective {
 public:
  ProcessCollective(std::vector<int> fds, int64_t rank, int64_t size, std::chrono::milliseconds timeout)
      : fds_(std::move(fds)), rank_(rank), size_(size), timeout_(timeout) {}
  ~ProcessCollective() override {
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
  }
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }

  Status all_reduce_sum(Tensor& t) override {
    if (t.device() != Device::cpu || t.dtype() != DType::f32)
      return make_error(ErrorCode::invalid_argument, "process all-reduce takes host f32 tensors");
    const int64_t n = t.numel();
    float* data = t.data<float>();
    const Clock::time_point deadline = Clock::now() + timeout_;
    if (rank_ != 0) {
      TROUPE_TRY(send_block(fds_[0], Op::all_reduce_sum, data, n, deadline));
      return recv_block(fds_[0], Op::all_reduce_sum, data, n, deadline);
    }
    std::vector<float> sum(static_cast<size_t>(n), 0.0f), part(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) sum[size_t(i)] += data[i];
    for (int64_t r = 1; r < size_; ++r) {
      TROUPE_TRY(recv_block(fds_[size_t(r)], Op::all_reduce_sum, part.data(), n, deadline));
      for (int64_t i = 0; i < n; ++i) sum[size_t(i)] += part[size_t(i)];
    }
    for (int64_t r = 1; r < size_; ++r)
      TROUPE_TRY(send_block(fds_[size_t(r)], Op::all_reduce_sum, sum.data(), n, deadline));
    std::memcpy(data, sum.data(), sum.size() * sizeof(float));
    return Status::success();
  }

  Status all_gather(const Tensor& local, Tensor& out) override {
    if (local.device() != Device::cpu || out.device() != Device::cpu)
      return make_error(ErrorCode::invalid_argument, "process all-gather takes host tensors");
    TROUPE_TRY(check_all_gather_shapes(local, out, size_));
    const int64_t block = local.numel();
    std::vector<float> blocks(static_cast<size_t>(block * size_));  // rank-major
    const Clock::time_point deadline = Clock::now() + timeout_;
    if (rank_ != 0) {
      TROUPE_TRY(send_block(fds_[0], Op::all_gather, local.data<float>(), block, deadline));
      TROUPE_TRY(recv_block(fds_[0], Op::all_gather, blocks.data(), block * size_, deadline));
    } else {
      std::memcpy(blocks.data(), local.data<float>(), size_t(block) * sizeof(float));
      for (int64_t r = 1; r < size_; ++r)
        TROUPE_TRY(recv_block(fds_[size_t(r)], Op::all_gather, blocks.data() + r * block, block, deadline));
      for (int64_t r = 1; r < size_; ++r)
        TROUPE_TRY(send_block(fds_[size_t(r)], Op::all_gather, blocks.data(), block * size_, deadline));
    }
    std::vector<const float*> starts(static_cast<size_t>(size_));
    for (int64_t r = 0; r < size_; ++r) starts[size_t(r)] = blocks.data() + r * block;
    place_gathered_columns(starts.data(), size_, local.size(0), local.size(1), out.data<float>(), out.size(1));
    return Status::success();
  }

  void abort(const std::string& why) override {
    std::lock_guard lock(mutex_);
    if (aborted_.exchange(true)) return;
    reason_ = why.empty() ? "aborted" : why;
    for (int fd : fds_)
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);  // wakes a poll of this process; peers read EOF
  }

 private:
  Error aborted_error() {
    std::lock_guard lock(mutex_);
    return make_error(ErrorCode::unavailable, "tensor-parallel group aborted: " + reason_);
  }

  // Aborts the group with `error`'s message and returns it.
  Error fail(Error error) {
    abort(error.message);
    return error;
  }

  // Waits for `events` on fd until the deadline.
  Status wait(int fd, short events, Clock::time_point deadline) {
    for (;;) {
      if (aborted_.load()) return aborted_error();
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0)
        return fail(make_error(ErrorCode::timeout, "a rank did not reach the collective within " +
                                                       std::to_string(timeout_.count()) + " ms"));
      pollfd p{fd, events, 0};
      const int ready = ::poll(&p, 1, int(left));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return fail(make_error(ErrorCode::unavailable, std::string("poll: ") + std::strerror(errno)));
      if (ready > 0) return aborted_.load() ? Status(aborted_error()) : Status::success();
    }
  }

  Status write_all(int fd, const void* data, size_t bytes, Clock::time_point deadline) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      TROUPE_TRY(wait(fd, POLLOUT, deadline));
      const ssize_t sent = ::send(fd, p, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (sent <= 0) return fail(make_error(ErrorCode::unavailable, "a tensor-parallel peer is gone (send)"));
      p += sent;
      bytes -= size_t(sent);
    }
    return Status::success();
  }

  Status read_all(int fd, void* data, size_t bytes, Clock::time_point deadline) {
    char* p = static_cast<char*>(data);
    while (bytes > 0) {
      TROUPE_TRY(wait(fd, POLLIN, deadline));
      const ssize_t got = ::recv(fd, p, bytes, MSG_DONTWAIT);
      if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (got <= 0) return fail(make_error(ErrorCode::unavailable, "a tensor-parallel peer is gone (EOF)"));
      p += got;
      bytes -= size_t(got);
    }
    return Status::success();
  }

  Status send_block(int fd, Op op, const float* data, int64_t numel, Clock::time_point deadline) {
    const Header header{uint64_t(op), uint64_t(numel)};
    TROUPE_TRY(write_all(fd, &header, sizeof(header), deadline));
    return write_all(fd, data, size_t(numel) * sizeof(float), deadline);
  }

  // Reads a block of exactly `numel` floats of `op`; anything else aborts the group.
  Status recv_block(int fd, Op op, float* data, int64_t numel, Clock::time_point deadline) {
    Header header;
    TROUPE_TRY(read_all(fd, &header, sizeof(header), deadline));
    if (header.op != uint64_t(op) || header.numel != uint64_t(numel))
      return fail(make_error(ErrorCode::invalid_argument,
                             "tensor-parallel ranks called different collectives (op " + std::to_string(header.op) +
                                 " of " + std::to_string(header.numel) + " floats, expected op " +
                                 std::to_string(uint64_t(op)) + " of " + std::to_string(numel) + ")"));
    return read_all(fd, data, size_t(numel) * sizeof(float), deadline);
  }

  std::vector<int> fds_;  // rank 0: [size], fds_[r] to rank r; others: [1], to rank 0
  int64_t rank_, size_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::atomic<bool> aborted_{false};
  std::string reason_;
};

}  // namespace

Result<SocketStar> make_socket_star(int64_t size) {
  if (size < 1) return make_error(ErrorCode::invalid_argument, "a socket star needs at least one rank");
  SocketStar star;
  star.size = size;
  star.hub.assign(size_t(size), -1);
  star.leaf.assign(size_t(size), -1);
  for (int64_t r = 1; r < size; ++r) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      const std::string why = std::strerror(errno);
      for (int64_t k = 1; k < r; ++k) {
        ::close(star.hub[size_t(k)]);
        ::close(star.leaf[size_t(k)]);
      }
      return make_error(ErrorCode::out_of_resources, "socketpair: " + why);
    }
    star.hub[size_t(r)] = pair[0];
    star.leaf[size_t(r)] = pair[1];
  }
  return star;
}

std::unique_ptr<Collective> make_process_collective(const SocketStar& star, int64_t rank,
                                                    std::chrono::milliseconds timeout) {
  std::vector<int> mine;
  for (int64_t r = 1; r < star.size; ++r) {
    if (rank != 0) ::close(star.hub[size_t(r)]);
    if (r != rank) ::close(star.leaf[size_t(r)]);
  }
  if (rank == 0) {
    mine = star.hub;  // [size], mine[0] = -1
  } else {
    mine.push_back(star.leaf[size_t(rank)]);
  }
  return std::make_unique<ProcessCollective>(std::move(mine), rank, star.size, timeout);
}

}  // namespace troupe

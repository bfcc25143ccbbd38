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

enum class Op : uint64_t { all_reduce_sum = 1, all_gather = 2, all_to_all_counts = 3, all_to_all = 4 };

struct Header {
  uint64_t op = 0;
  uint64_t bytes = 0;  // that follow
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

  // Every rank > 0 sends its counts to rank 0, which sends the whole [size, size] matrix back.
  Result<std::vector<int64_t>> all_to_all_counts(const std::vector<int64_t>& send_rows) override {
    if (int64_t(send_rows.size()) != size_)
      return fail(make_error(ErrorCode::invalid_argument, "all_to_all_counts: one count per rank"));
    const Clock::time_point deadline = Clock::now() + timeout_;
    std::vector<int64_t> matrix(static_cast<size_t>(size_ * size_));  // [sender][receiver]
    const size_t row = size_t(size_) * sizeof(int64_t);
    if (rank_ != 0) {
      TROUPE_TRY(send_bytes(fds_[0], Op::all_to_all_counts, send_rows.data(), row, deadline));
      TROUPE_TRY(recv_bytes(fds_[0], Op::all_to_all_counts, matrix.data(), row * size_t(size_), deadline));
    } else {
      std::memcpy(matrix.data(), send_rows.data(), row);
      for (int64_t r = 1; r < size_; ++r)
        TROUPE_TRY(recv_bytes(fds_[size_t(r)], Op::all_to_all_counts, matrix.data() + r * size_, row, deadline));
      for (int64_t r = 1; r < size_; ++r)
        TROUPE_TRY(send_bytes(fds_[size_t(r)], Op::all_to_all_counts, matrix.data(), row * size_t(size_), deadline));
    }
    std::vector<int64_t> recv_rows(static_cast<size_t>(size_));
    for (int64_t s = 0; s < size_; ++s) recv_rows[size_t(s)] = matrix[size_t(s * size_ + rank_)];
    return recv_rows;
  }

  // Every rank > 0 sends rank 0 its row width, both count vectors and its rows; rank 0 checks
  // the whole count matrix (a mismatch aborts the group), then sends each rank its blocks from
  // every rank, in rank order.
  Status all_to_all(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                    const std::vector<int64_t>& recv_rows) override {
    if (send.device() != Device::cpu || recv.device() != Device::cpu)
      return fail(make_error(ErrorCode::invalid_argument, "process all-to-all takes host tensors"));
    Status shapes = check_all_to_all_shapes(send, send_rows, recv, recv_rows, size_);
    if (!shapes.ok()) return fail(shapes.error());
    const Clock::time_point deadline = Clock::now() + timeout_;
    const size_t row_bytes = size_t(send.size(1)) * dtype_size(send.dtype());
    // The head of a rank's message: row_bytes, send_rows[size], recv_rows[size].
    const size_t head_words = 1 + 2 * size_t(size_);
    auto head_of = [&](const std::vector<int64_t>& sends, const std::vector<int64_t>& recvs) {
      std::vector<int64_t> head{int64_t(row_bytes)};
      head.insert(head.end(), sends.begin(), sends.end());
      head.insert(head.end(), recvs.begin(), recvs.end());
      return head;
    };
    if (rank_ != 0) {
      const std::vector<int64_t> head = head_of(send_rows, recv_rows);
      TROUPE_TRY(send_bytes(fds_[0], Op::all_to_all, head.data(), head.size() * sizeof(int64_t), deadline));
      TROUPE_TRY(send_bytes(fds_[0], Op::all_to_all, send.raw(), send.nbytes(), deadline));
      return recv_bytes(fds_[0], Op::all_to_all, recv.raw(), recv.nbytes(), deadline);
    }
    std::vector<std::vector<int64_t>> heads(static_cast<size_t>(size_));
    std::vector<std::vector<uint8_t>> rows(static_cast<size_t>(size_));
    heads[0] = head_of(send_rows, recv_rows);
    for (int64_t r = 1; r < size_; ++r) {
      heads[size_t(r)].resize(head_words);
      TROUPE_TRY(recv_bytes(fds_[size_t(r)], Op::all_to_all, heads[size_t(r)].data(), head_words * sizeof(int64_t),
                            deadline));
      int64_t total = 0;
      for (int64_t d = 0; d < size_; ++d) total += heads[size_t(r)][size_t(1 + d)];
      if (heads[size_t(r)][0] != int64_t(row_bytes) || total < 0)
        return fail(make_error(ErrorCode::invalid_argument, "all_to_all: rank " + std::to_string(r) +
                                                                " sends rows of " +
                                                                std::to_string(heads[size_t(r)][0]) +
                                                                " bytes, rank 0 of " + std::to_string(row_bytes)));
      rows[size_t(r)].resize(size_t(total) * row_bytes);
      TROUPE_TRY(recv_bytes(fds_[size_t(r)], Op::all_to_all, rows[size_t(r)].data(), rows[size_t(r)].size(), deadline));
    }
    for (int64_t s = 0; s < size_; ++s)
      for (int64_t d = 0; d < size_; ++d) {
        const int64_t sent = heads[size_t(s)][size_t(1 + d)], expected = heads[size_t(d)][size_t(1 + size_ + s)];
        if (sent != expected)
          return fail(make_error(ErrorCode::invalid_argument,
                                 "all_to_all: rank " + std::to_string(s) + " sends rank " + std::to_string(d) + " " +
                                     std::to_string(sent) + " rows; it expects " + std::to_string(expected)));
      }
    const uint8_t* own = static_cast<const uint8_t*>(send.raw());
    std::vector<uint8_t> reply;
    for (int64_t d = 0; d < size_; ++d) {
      reply.clear();
      for (int64_t s = 0; s < size_; ++s) {
        const uint8_t* from = s == 0 ? own : rows[size_t(s)].data();
        int64_t first = 0;
        for (int64_t k = 0; k < d; ++k) first += heads[size_t(s)][size_t(1 + k)];
        const int64_t count = heads[size_t(s)][size_t(1 + d)];
        reply.insert(reply.end(), from + size_t(first) * row_bytes, from + size_t(first + count) * row_bytes);
      }
      if (d == 0) {
        if (!reply.empty()) std::memcpy(recv.raw(), reply.data(), reply.size());
      } else {
        TROUPE_TRY(send_bytes(fds_[size_t(d)], Op::all_to_all, reply.data(), reply.size(), deadline));
      }
    }
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

  // A block of `bytes` bytes of `op`.
  Status send_bytes(int fd, Op op, const void* data, size_t bytes, Clock::time_point deadline) {
    const Header header{uint64_t(op), uint64_t(bytes)};
    TROUPE_TRY(write_all(fd, &header, sizeof(header), deadline));
    return write_all(fd, data, bytes, deadline);
  }

  // Reads a block of exactly `bytes` bytes of `op`; anything else aborts the group.
  Status recv_bytes(int fd, Op op, void* data, size_t bytes, Clock::time_point deadline) {
    Header header;
    TROUPE_TRY(read_all(fd, &header, sizeof(header), deadline));
    if (header.op != uint64_t(op) || header.bytes != uint64_t(bytes))
      return fail(make_error(ErrorCode::invalid_argument,
                             "tensor-parallel ranks called different collectives (op " + std::to_string(header.op) +
                                 " of " + std::to_string(header.bytes) + " bytes, expected op " +
                                 std::to_string(uint64_t(op)) + " of " + std::to_string(bytes) + ")"));
    return read_all(fd, data, bytes, deadline);
  }

  Status send_block(int fd, Op op, const float* data, int64_t numel, Clock::time_point deadline) {
    return send_bytes(fd, op, data, size_t(numel) * sizeof(float), deadline);
  }
  Status recv_block(int fd, Op op, float* data, int64_t numel, Clock::time_point deadline) {
    return recv_bytes(fd, op, data, size_t(numel) * sizeof(float), deadline);
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

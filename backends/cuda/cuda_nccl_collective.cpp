#include "backends/cuda/cuda_nccl_collective.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <mutex>

namespace troupe::cuda {
namespace {

// The group's communicators; aborting one aborts them all (a rank waiting in a collective
// for a dead one would otherwise hang).
struct NcclGroup {
  std::vector<ncclComm_t> comms;
  std::mutex mutex;
  std::atomic<bool> aborted{false};
  std::string reason;

  void abort(const std::string& why) {
    std::lock_guard lock(mutex);
    if (aborted.exchange(true)) return;
    reason = why;
    for (ncclComm_t comm : comms) ncclCommAbort(comm);
  }
  ~NcclGroup() {
    if (!aborted.load())
      for (ncclComm_t comm : comms) ncclCommAbort(comm);  // never ncclCommDestroy: it can block
  }
};

class NcclCollective final : public Collective {
 public:
  NcclCollective(std::shared_ptr<NcclGroup> group, int64_t rank)
      : group_(std::move(group)), rank_(rank) {}
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return int64_t(group_->comms.size()); }

  Status all_reduce_sum(Tensor& t) override {
    if (group_->aborted.load()) return make_error(ErrorCode::unavailable, "NCCL group aborted: " + group_->reason);
    if (t.device() != Device::cuda || t.dtype() != DType::f32)
      return make_error(ErrorCode::invalid_argument, "NCCL all-reduce takes device f32 tensors");
    const ncclResult_t result = ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), ncclFloat, ncclSum,
                                              group_->comms[size_t(rank_)], nullptr);
    if (result != ncclSuccess)
      return make_error(ErrorCode::unavailable, std::string("ncclAllReduce: ") + ncclGetErrorString(result));
    return Status::success();
  }

  // ncclAllGather into a rank-major staging buffer [size, rows, cols], then one strided copy per
  // rank into its columns of `out` (NCCL gathers whole buffers, not column blocks).
  Status all_gather(const Tensor& local, Tensor& out) override {
    if (group_->aborted.load()) return make_error(ErrorCode::unavailable, "NCCL group aborted: " + group_->reason);
    if (local.device() != Device::cuda || out.device() != Device::cuda)
      return make_error(ErrorCode::invalid_argument, "NCCL all-gather takes device tensors");
    TROUPE_TRY(check_all_gather_shapes(local, out, size()));
    const int64_t rows = local.size(0), cols = local.size(1), width = out.size(1), n = size();
    const size_t block = size_t(rows * cols);
    TROUPE_TRY(reserve_staging(block * size_t(n) * sizeof(float)));
    float* staging = static_cast<float*>(staging_);
    const ncclResult_t result =
        ncclAllGather(local.raw(), staging, block, ncclFloat, group_->comms[size_t(rank_)], nullptr);
    if (result != ncclSuccess)
      return make_error(ErrorCode::unavailable, std::string("ncclAllGather: ") + ncclGetErrorString(result));
    float* dst = out.data<float>();
    for (int64_t r = 0; r < n; ++r) {
      const int64_t first = r * cols, count = std::min(cols, width - first);
      if (count <= 0 || rows == 0) continue;  // a rank holding only padding
      const cudaError_t copied =
          cudaMemcpy2DAsync(dst + first, size_t(width) * sizeof(float), staging + size_t(r) * block,
                            size_t(cols) * sizeof(float), size_t(count) * sizeof(float), size_t(rows),
                            cudaMemcpyDeviceToDevice, nullptr);
      if (copied != cudaSuccess)
        return make_error(ErrorCode::unavailable, std::string("all_gather copy: ") + cudaGetErrorString(copied));
    }
    return Status::success();
  }

  // The counts go through ncclAllGather of [size] int64 (one small device buffer), then to the host.
  Result<std::vector<int64_t>> all_to_all_counts(const std::vector<int64_t>& send_rows) override {
    if (group_->aborted.load()) return make_error(ErrorCode::unavailable, "NCCL group aborted: " + group_->reason);
    const int64_t n = size();
    if (int64_t(send_rows.size()) != n)
      return make_error(ErrorCode::invalid_argument, "all_to_all_counts: one count per rank");
    const size_t row = size_t(n) * sizeof(int64_t);
    TROUPE_TRY(reserve_staging(row * size_t(n + 1)));
    int64_t* matrix = static_cast<int64_t*>(staging_);  // [n][n], then this rank's row
    int64_t* mine = matrix + n * n;
    cudaError_t copied = cudaMemcpy(mine, send_rows.data(), row, cudaMemcpyHostToDevice);
    if (copied != cudaSuccess)
      return make_error(ErrorCode::unavailable, std::string("all_to_all_counts: ") + cudaGetErrorString(copied));
    const ncclResult_t result =
        ncclAllGather(mine, matrix, size_t(n), ncclInt64, group_->comms[size_t(rank_)], nullptr);
    if (result != ncclSuccess)
      return make_error(ErrorCode::unavailable, std::string("ncclAllGather: ") + ncclGetErrorString(result));
    std::vector<int64_t> host(static_cast<size_t>(n * n));
    copied = cudaMemcpy(host.data(), matrix, row * size_t(n), cudaMemcpyDeviceToHost);  // waits for the gather
    if (copied != cudaSuccess)
      return make_error(ErrorCode::unavailable, std::string("all_to_all_counts: ") + cudaGetErrorString(copied));
    std::vector<int64_t> recv_rows(static_cast<size_t>(n));
    for (int64_t s = 0; s < n; ++s) recv_rows[size_t(s)] = host[size_t(s * n + rank_)];
    return recv_rows;
  }

  // One ncclSend and one ncclRecv per peer in a group (bytes: any dtype). Counts that disagree
  // with their sender cannot be seen here: callers take recv_rows from all_to_all_counts.
  Status all_to_all(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                    const std::vector<int64_t>& recv_rows) override {
    if (group_->aborted.load()) return make_error(ErrorCode::unavailable, "NCCL group aborted: " + group_->reason);
    if (send.device() != Device::cuda || recv.device() != Device::cuda)
      return make_error(ErrorCode::invalid_argument, "NCCL all-to-all takes device tensors");
    TROUPE_TRY(check_all_to_all_shapes(send, send_rows, recv, recv_rows, size()));
    const size_t row_bytes = size_t(send.size(1)) * dtype_size(send.dtype());
    ncclComm_t comm = group_->comms[size_t(rank_)];
    const uint8_t* from = static_cast<const uint8_t*>(send.raw());
    uint8_t* to = static_cast<uint8_t*>(recv.raw());
    ncclResult_t result = ncclGroupStart();
    for (int64_t peer = 0; peer < size() && result == ncclSuccess; ++peer) {
      const size_t out_bytes = size_t(send_rows[size_t(peer)]) * row_bytes;
      const size_t in_bytes = size_t(recv_rows[size_t(peer)]) * row_bytes;
      if (out_bytes > 0) result = ncclSend(from, out_bytes, ncclUint8, int(peer), comm, nullptr);
      if (result == ncclSuccess && in_bytes > 0) result = ncclRecv(to, in_bytes, ncclUint8, int(peer), comm, nullptr);
      from += out_bytes;
      to += in_bytes;
    }
    const ncclResult_t ended = ncclGroupEnd();
    if (result == ncclSuccess) result = ended;
    if (result != ncclSuccess)
      return make_error(ErrorCode::unavailable, std::string("NCCL all-to-all: ") + ncclGetErrorString(result));
    return Status::success();
  }

  void abort(const std::string& why) override { group_->abort(why); }

  ~NcclCollective() override {
    if (staging_ != nullptr) cudaFree(staging_);
  }

 private:
  // Grows the staging buffer (all_gather's blocks, all_to_all_counts' matrix) on this rank's
  // device (the thread is bound to it).
  Status reserve_staging(size_t bytes) {
    if (bytes <= staging_bytes_) return Status::success();
    if (staging_ != nullptr) cudaFree(staging_);
    staging_ = nullptr;
    staging_bytes_ = 0;
    const cudaError_t made = cudaMalloc(&staging_, bytes);
    if (made != cudaSuccess)
      return make_error(ErrorCode::out_of_resources, std::string("all_gather staging: ") + cudaGetErrorString(made));
    staging_bytes_ = bytes;
    return Status::success();
  }

  std::shared_ptr<NcclGroup> group_;
  int64_t rank_;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace

Result<std::vector<std::unique_ptr<Collective>>> make_nccl_collectives(const std::vector<int>& devices) {
  auto group = std::make_shared<NcclGroup>();
  group->comms.resize(devices.size());
  const ncclResult_t result = ncclCommInitAll(group->comms.data(), int(devices.size()), devices.data());
  if (result != ncclSuccess) {
    group->aborted = true;  // nothing to abort
    return make_error(ErrorCode::unavailable, std::string("ncclCommInitAll: ") + ncclGetErrorString(result));
  }
  std::vector<std::unique_ptr<Collective>> ranks;
  for (size_t r = 0; r < devices.size(); ++r) ranks.push_back(std::make_unique<NcclCollective>(group, int64_t(r)));
  return ranks;
}

}  // namespace troupe::cuda

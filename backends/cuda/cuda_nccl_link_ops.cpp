#include "backends/cuda/cuda_nccl_link_ops.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace troupe::cuda {
namespace {

static_assert(NcclLinkOps::kUniqueIdBytes == NCCL_UNIQUE_ID_BYTES, "NCCL's unique id size changed");

class CudaNcclLinkOps final : public NcclLinkOps {
 public:
  explicit CudaNcclLinkOps(int device) : device_(device) {}
  ~CudaNcclLinkOps() override {
    abort();  // never ncclCommDestroy: it can block when a peer is gone
    if (event_ != nullptr) cudaEventDestroy(event_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Result<std::vector<uint8_t>> make_unique_id() override {
    ncclUniqueId id;
    const ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) return make_error(ErrorCode::unavailable, std::string("ncclGetUniqueId: ") + ncclGetErrorString(result));
    std::vector<uint8_t> bytes(NCCL_UNIQUE_ID_BYTES);
    std::memcpy(bytes.data(), id.internal, NCCL_UNIQUE_ID_BYTES);
    return bytes;
  }

  Status start_init(const std::vector<uint8_t>& unique_id, int nranks, int rank) override {
    abort();  // a previous epoch's communicator
    if (cudaSetDevice(device_) != cudaSuccess) return make_error(ErrorCode::unavailable, "cudaSetDevice failed");
    if (stream_ == nullptr && cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) != cudaSuccess)
      return make_error(ErrorCode::unavailable, "cudaStreamCreate failed");
    if (event_ == nullptr && cudaEventCreateWithFlags(&event_, cudaEventDisableTiming) != cudaSuccess)
      return make_error(ErrorCode::unavailable, "cudaEventCreate failed");
    ncclUniqueId id;
    std::memcpy(id.internal, unique_id.data(), NCCL_UNIQUE_ID_BYTES);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t result = ncclCommInitRankConfig(&comm_, nranks, id, rank, &config);
    if (result != ncclSuccess && result != ncclInProgress) {
      comm_ = nullptr;
      return make_error(ErrorCode::unavailable, ncclGetErrorString(result));
    }
    return Status::success();
  }

  Progress poll_init(std::string* error) override { return async_state(error); }

  Status start_send(const Tensor& t, int peer) override {
    TROUPE_TRY(bind("ncclSend"));
    return enqueue(ncclSend(t.raw(), t.nbytes(), ncclUint8, peer, comm_, stream_), "ncclSend");
  }
  Status start_recv(Tensor& t, int peer) override {
    TROUPE_TRY(bind("ncclRecv"));
    return enqueue(ncclRecv(t.raw(), t.nbytes(), ncclUint8, peer, comm_, stream_), "ncclRecv");
  }

  // First the nonblocking call's own progress (until it is enqueued), then the stream's event.
  Progress poll_transfer(std::string* error) override {
    const Progress enqueued = async_state(error);
    if (enqueued != Progress::done) return enqueued;
    if (!event_recorded_) {
      if (cudaEventRecord(event_, stream_) != cudaSuccess) {
        *error = "cudaEventRecord failed";
        return Progress::failed;
      }
      event_recorded_ = true;
    }
    const cudaError_t query = cudaEventQuery(event_);
    if (query == cudaErrorNotReady) return Progress::pending;
    event_recorded_ = false;
    if (query != cudaSuccess) {
      *error = cudaGetErrorString(query);
      return Progress::failed;
    }
    return Progress::done;
  }

  Result<Tensor> buffer(int slot, DType dtype, std::vector<int64_t> shape) override {
    if (slot < 0 || slot >= kNumSlots) return make_error(ErrorCode::internal, "NCCL link buffer slot " + std::to_string(slot));
    const size_t bytes = size_t(numel_of(shape)) * dtype_size(dtype);
    std::shared_ptr<Storage>& storage = slots_[slot];
    if (!storage || storage->nbytes < bytes) {
      if (cudaSetDevice(device_) != cudaSuccess) return make_error(ErrorCode::unavailable, "cudaSetDevice failed");
      storage.reset();  // cudaFree of the smaller one (its last reader synchronized before this receive)
      void* data = nullptr;
      const size_t rounded = std::max<size_t>(bytes, 256);
      if (cudaMalloc(&data, rounded) != cudaSuccess)
        return make_error(ErrorCode::out_of_resources, "NCCL link buffer: cudaMalloc of " + std::to_string(rounded) + " bytes failed");
      storage = std::make_shared<Storage>();
      storage->data = data;
      storage->nbytes = rounded;
      storage->device = Device::cuda;
      storage->deleter = [](void* p) { cudaFree(p); };
    }
    return Tensor::wrap(storage, dtype, std::move(shape));
  }

  Status copy_to_device(Tensor& dst, const void* src, size_t bytes) override {
    return copy(dst.raw(), src, bytes, cudaMemcpyHostToDevice, "copy to the device");
  }
  Status copy_to_host(void* dst, const Tensor& src, size_t bytes) override {
    return copy(dst, src.raw(), bytes, cudaMemcpyDeviceToHost, "copy to the host");
  }

  void abort() override {
    if (comm_ == nullptr) return;
    ncclCommAbort(comm_);
    comm_ = nullptr;
    event_recorded_ = false;
  }

 private:
  static constexpr int kNumSlots = 2;

  // On this link's stream, waited for: the bytes are there (or gone) when it returns.
  Status copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what) {
    if (bytes == 0) return Status::success();
    if (cudaSetDevice(device_) != cudaSuccess) return make_error(ErrorCode::unavailable, "cudaSetDevice failed");
    if (stream_ == nullptr && cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) != cudaSuccess)
      return make_error(ErrorCode::unavailable, "cudaStreamCreate failed");
    cudaError_t result = cudaMemcpyAsync(dst, src, bytes, kind, stream_);
    if (result == cudaSuccess) result = cudaStreamSynchronize(stream_);
    if (result != cudaSuccess)
      return make_error(ErrorCode::unavailable, std::string("NCCL link ") + what + ": " + cudaGetErrorString(result));
    return Status::success();
  }

  Progress async_state(std::string* error) {
    if (comm_ == nullptr) {
      *error = "no communicator";
      return Progress::failed;
    }
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
    if (result != ncclSuccess) state = result;
    if (state == ncclInProgress) return Progress::pending;
    if (state == ncclSuccess) return Progress::done;
    *error = std::string(ncclGetErrorString(state)) + ": " + ncclGetLastError(comm_);
    return Progress::failed;
  }

  // The calling thread onto this link's GPU, with a live communicator.
  Status bind(const char* what) {
    if (comm_ == nullptr) return make_error(ErrorCode::unavailable, std::string(what) + ": no communicator");
    if (cudaSetDevice(device_) != cudaSuccess)
      return make_error(ErrorCode::unavailable, std::string(what) + ": cudaSetDevice failed");
    return Status::success();
  }

  Status enqueue(ncclResult_t result, const char* what) {
    if (result != ncclSuccess && result != ncclInProgress)
      return make_error(ErrorCode::unavailable, std::string(what) + ": " + ncclGetErrorString(result));
    event_recorded_ = false;
    return Status::success();
  }

  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t event_ = nullptr;
  bool event_recorded_ = false;
  std::shared_ptr<Storage> slots_[kNumSlots];
};

}  // namespace

std::unique_ptr<NcclLinkOps> make_nccl_link_ops(int device) {
  // No NVLink multicast (NVLS) unless the operator asked for it: a 2-rank send/recv gains nothing
  // from it, and it is off on the shared machines this runs on (before NCCL reads its environment).
  ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  return std::make_unique<CudaNcclLinkOps>(device);
}

}  // namespace troupe::cuda

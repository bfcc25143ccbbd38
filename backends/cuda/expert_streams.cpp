#include "backends/cuda/expert_streams.hpp"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

namespace troupe::cuda {

ExpertStreams::~ExpertStreams() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
  for (int i = 0; i < kStreams; ++i) {
    if (streams_[i]) cudaStreamSynchronize(streams_[i]);
    if (workspaces_[i]) cudaFree(workspaces_[i]);
    if (done_[i]) cudaEventDestroy(done_[i]);
    if (streams_[i]) cudaStreamDestroy(streams_[i]);
  }
  for (void* h : handles_)
    if (h) cublasLtDestroy(static_cast<cublasLtHandle_t>(h));
  if (forked_) cudaEventDestroy(forked_);
}

int ExpertStreams::ensure(int device) {
  if (ready_) return cudaSuccess;
  if (!forked_) {
    if (cudaError_t e = cudaEventCreateWithFlags(&forked_, cudaEventDisableTiming); e != cudaSuccess) return e;
  }
  for (int i = 0; i < kStreams; ++i) {
    if (!streams_[i]) {
      if (cudaError_t e = cudaStreamCreateWithFlags(&streams_[i], cudaStreamNonBlocking); e != cudaSuccess) return e;
    }
    if (!done_[i]) {
      if (cudaError_t e = cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming); e != cudaSuccess) return e;
    }
    if (!workspaces_[i]) {
      if (cudaError_t e = cudaMalloc(&workspaces_[i], kWorkspaceBytes); e != cudaSuccess) return e;
    }
  }
  for (void*& h : handles_) {
    if (h) continue;
    cublasLtHandle_t lt = nullptr;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) return cudaErrorInitializationError;
    h = lt;
  }
  if (threads_.empty())
    for (int w = 0; w < kThreads; ++w) threads_.emplace_back([this, w, device] { work(w, device); });
  ready_ = true;
  return cudaSuccess;
}

void ExpertStreams::work(int worker, int device) {
  cudaSetDevice(device);  // the current device is per thread
  long seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(worker);
    {
      std::lock_guard lock(mutex_);
      ++finished_;
    }
    done_cv_.notify_one();
  }
}

void ExpertStreams::run(const std::function<void(int)>& fn) {
  {
    std::lock_guard lock(mutex_);
    job_ = &fn;
    finished_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  std::unique_lock lock(mutex_);
  done_cv_.wait(lock, [&] { return finished_ == kThreads; });
  job_ = nullptr;
}

int ExpertStreams::fork(CUstream_st* main) {
  if (cudaError_t e = cudaEventRecord(forked_, main); e != cudaSuccess) return e;
  for (int i = 0; i < kStreams; ++i)
    if (cudaError_t e = cudaStreamWaitEvent(streams_[i], forked_, 0); e != cudaSuccess) return e;
  return cudaSuccess;
}

int ExpertStreams::join(CUstream_st* main) {
  for (int i = 0; i < kStreams; ++i) {
    if (cudaError_t e = cudaEventRecord(done_[i], streams_[i]); e != cudaSuccess) return e;
    if (cudaError_t e = cudaStreamWaitEvent(main, done_[i], 0); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace troupe::cuda

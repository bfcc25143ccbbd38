#pragma once
// Side streams, and host threads to fill them, for many small GEMMs that one stream would run one
// after another: a prefill's MoE experts (one FP8 GEMM of ~100-200 rows each: 32 to 56 output
// tiles of 128 x 128, a quarter to a half of an H200's 132 SMs). One thread enqueueing them all was
// the limit too (a block-scaled cublasLtMatmul costs ~45 us of host time: 514 of them took 23.8 ms
// of a 4,096-token R1 MoE layer on the H200), so kThreads workers enqueue at once, each on its own
// kStreamsPerThread streams with its own cuBLASLt handle and workspaces.
//   fork(main)      every side stream waits for what `main` holds so far
//   run(fn)         fn(worker) on every worker thread (the device made current there); returns when
//                   all have returned (their launches enqueued, not finished)
//   join(main)      `main` waits for everything the side streams hold
// so what follows on the backend's stream, and the pool's stream-ordered frees, come after it.
// Created on first use; not for graph recording (the step graphs capture the backend's stream only).
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

struct CUstream_st;
struct CUevent_st;

namespace troupe::cuda {

class ExpertStreams {
 public:
  static constexpr int kThreads = 4, kStreamsPerThread = 2, kStreams = kThreads * kStreamsPerThread;
  static constexpr size_t kWorkspaceBytes = size_t(16) << 20;

  ExpertStreams() = default;
  ExpertStreams(const ExpertStreams&) = delete;
  ExpertStreams& operator=(const ExpertStreams&) = delete;
  ~ExpertStreams();

  // The streams, events, workspaces, handles and threads on `device` (first call); a cudaError_t, 0
  // on success.
  int ensure(int device);
  int fork(CUstream_st* main);
  int join(CUstream_st* main);
  void run(const std::function<void(int worker)>& fn);
  CUstream_st* stream(int i) const { return streams_[i]; }
  void* workspace(int i) const { return workspaces_[i]; }
  void* lt_handle(int worker) const { return handles_[worker]; }  // a cublasLtHandle_t
  // Device bytes held (the workspaces), 0 before ensure().
  size_t bytes() const { return ready_ ? kStreams * kWorkspaceBytes : 0; }

 private:
  void work(int worker, int device);

  bool ready_ = false;
  CUstream_st* streams_[kStreams] = {};
  CUevent_st* done_[kStreams] = {};
  CUevent_st* forked_ = nullptr;
  void* workspaces_[kStreams] = {};
  void* handles_[kThreads] = {};
  // The workers: each runs job_ once per generation_, then counts itself into finished_.
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  long generation_ = 0;
  int finished_ = 0;
  bool stop_ = false;
};

}  // namespace troupe::cuda

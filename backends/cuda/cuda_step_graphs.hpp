#pragma once
// The CUDA backend's step graphs (Backend::begin_graph / end_graph): CUDA graphs recorded by stream
// capture, one per key, replayed with new inputs.
//
// While a forward is recorded, every tensor it or the ops allocate comes from one device arena
// (backends/cuda/arena_allocator.hpp), so the recording's addresses stay valid for every replay; tensors
// the forward allocates are remembered in order and handed out again, at the same addresses, when
// the same forward runs in replay. Host inputs (token ids, positions, block tables) reach the GPU
// by a copy from pinned staging memory that is part of the recording: at replay they are written
// there and the graph's copy picks them up; the graph is launched as soon as the last input is
// staged, so the rest of the replayed host code overlaps the step. All graphs share the arena and
// the staging memory: they never run at once, and a new one starts only after the last finished.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.hpp"

namespace troupe::cuda {

// Frees stream-ordered pool memory (the CUDA backend's tensors' deleter). While any graph is being
// recorded the free is deferred to the end of the recording: a free on the legacy stream would
// join the recording stream's work and invalidate the recording.
void free_pool_bytes(void* p);

class StepGraphs {
 public:
  enum class Mode { eager, capture, replay };

  StepGraphs();
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  Mode mode() const { return mode_; }
  bool recording() const { return mode_ == Mode::capture; }
  bool replaying() const { return mode_ == Mode::replay; }

  // `stream`: the cudaStream_t the backend's ops run on (not the legacy default stream).
  Result<GraphPhase> begin(int64_t key, void* stream);
  Status end(bool launch, void* stream);

  // A tensor the forward allocates (Backend::empty): from the arena while recording, remembered;
  // the remembered one while replaying.
  Tensor forward_tensor(DType dtype, std::vector<int64_t> shape);
  // A temporary of an op while recording (ops launch nothing while replaying).
  Tensor op_tensor(DType dtype, std::vector<int64_t> shape);
  // `host` on the device: recording, through pinned staging and a recorded copy; replaying, only
  // written to the staging (the tensor returned is the recorded copy's, filled at the launch).
  Tensor upload(const Tensor& host, void* stream);
  // The recording or replay can't be used (an op failed, a shape differed): end() errors.
  void fail(const std::string& why);

  int64_t num_graphs() const { return int64_t(graphs_.size()); }
  // Device bytes of the arena (0 before the first recording).
  size_t arena_bytes() const;
  // While recording: until end_hold, the ranges this arena's tensors release stay taken. Work on
  // a second stream (CudaBackend::moe_shared_ahead) may still use them after the host let them go,
  // and the first-fit arena would hand them to the recording stream's next temporary. False (no
  // hold to end) when not recording. Holds nest.
  bool hold_releases();
  void end_hold();
  // Drops every recording (not while one is open).
  void clear();

 private:
  struct Graph;
  struct Arena;
  Status prepare();           // arena and staging, on first use
  void launch_current(void* stream);  // current_'s graph; a failure goes to fail()
  Tensor arena_tensor(DType dtype, std::vector<int64_t> shape);
  Tensor placeholder(DType dtype, std::vector<int64_t> shape);  // for calls that must not fail

  Mode mode_ = Mode::eager;
  std::map<int64_t, std::unique_ptr<Graph>> graphs_;
  std::unique_ptr<Graph> pending_;  // being recorded
  Graph* current_ = nullptr;        // being recorded or replayed
  int64_t key_ = 0;
  size_t next_tensor_ = 0, next_upload_ = 0, staging_used_ = 0;
  std::string failure_;
  bool launched_ = false;  // this replay's graph is already launched (all inputs were staged)
  std::unique_ptr<Arena> arena_;
  void* staging_ = nullptr;      // pinned host bytes
  size_t staging_bytes_ = 0;
  void* done_ = nullptr;         // cudaEvent_t recorded after each launch
};

}  // namespace troupe::cuda

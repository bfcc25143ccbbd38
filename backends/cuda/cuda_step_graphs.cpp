#include "backends/cuda/cuda_step_graphs.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "backends/cuda/arena_allocator.hpp"
#include "runtime/dtype.hpp"

namespace troupe::cuda {
namespace {

constexpr size_t kStagingBytes = size_t(32) << 20;
constexpr size_t kMinArenaBytes = size_t(16) << 20, kMaxArenaBytes = size_t(1) << 30;

// Every live arena, so a tensor's deleter (a plain function) finds the one its bytes came from.
// While an arena's holds are open (StepGraphs::hold_releases), its releases wait in `held`.
struct ArenaEntry {
  char* base;
  size_t capacity;
  ArenaAllocator* allocator;
  int holds = 0;
  std::vector<size_t> held;  // offsets
};
std::mutex g_arenas_mutex;
std::vector<ArenaEntry> g_arenas;

void release_arena_bytes(void* p) {
  std::lock_guard lock(g_arenas_mutex);
  char* c = static_cast<char*>(p);
  for (ArenaEntry& a : g_arenas) {
    if (c < a.base || c >= a.base + a.capacity) continue;
    if (a.holds > 0)
      a.held.push_back(size_t(c - a.base));
    else
      a.allocator->release(size_t(c - a.base));
  }
}

// The entry of the arena at `base` (under g_arenas_mutex); nullptr when none.
ArenaEntry* entry_of(const char* base) {
  for (ArenaEntry& a : g_arenas)
    if (a.base == base) return &a;
  return nullptr;
}

void keep_bytes(void*) {}

// Recordings in progress (any backend) and the pool frees waiting for them to end.
std::mutex g_frees_mutex;
int g_recordings = 0;
std::vector<void*> g_deferred_frees;

void recording_started() {
  std::lock_guard lock(g_frees_mutex);
  ++g_recordings;
}

void recording_ended() {
  std::vector<void*> frees;
  {
    std::lock_guard lock(g_frees_mutex);
    if (--g_recordings > 0) return;
    frees.swap(g_deferred_frees);
  }
  for (void* p : frees) cudaFreeAsync(p, nullptr);
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

Tensor wrap_device(void* data, size_t nbytes, void (*deleter)(void*), DType dtype, std::vector<int64_t> shape) {
  auto storage = std::make_shared<Storage>();
  storage->data = data;
  storage->nbytes = nbytes;
  storage->device = Device::cuda;
  storage->deleter = deleter;
  return Tensor::wrap(std::move(storage), dtype, std::move(shape));
}

Error graph_error(const std::string& what) { return make_error(ErrorCode::unavailable, "step graph: " + what); }

}  // namespace

void free_pool_bytes(void* p) {
  {
    std::lock_guard lock(g_frees_mutex);
    if (g_recordings > 0) {
      g_deferred_frees.push_back(p);
      return;
    }
  }
  cudaFreeAsync(p, nullptr);
}

struct StepGraphs::Graph {
  struct Slot {
    void* data;
    DType dtype;
    std::vector<int64_t> shape;
    Tensor replayed;  // the handle replays hand out (made once: a replay allocates nothing)
  };
  struct Upload {
    size_t offset, nbytes;
    void* device;  // where the recorded copy puts it
    Tensor replayed;
  };
  cudaGraphExec_t exec = nullptr;
  std::vector<Slot> tensors;  // the forward's tensors, in the order it allocated them
  std::vector<Upload> uploads;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

struct StepGraphs::Arena {
  char* base = nullptr;
  ArenaAllocator allocator;
  explicit Arena(size_t capacity) : allocator(capacity) {}
  ~Arena() {
    {
      std::lock_guard lock(g_arenas_mutex);
      g_arenas.erase(std::remove_if(g_arenas.begin(), g_arenas.end(),
                                    [this](const ArenaEntry& a) { return a.base == base; }),
                     g_arenas.end());
    }
    if (base) cudaFree(base);
  }
};

bool StepGraphs::hold_releases() {
  if (mode_ != Mode::capture || !arena_ || !arena_->base) return false;
  std::lock_guard lock(g_arenas_mutex);
  ArenaEntry* entry = entry_of(arena_->base);
  if (!entry) return false;
  ++entry->holds;
  return true;
}

void StepGraphs::end_hold() {
  if (!arena_ || !arena_->base) return;
  std::lock_guard lock(g_arenas_mutex);
  ArenaEntry* entry = entry_of(arena_->base);
  if (!entry || entry->holds == 0 || --entry->holds > 0) return;
  for (size_t offset : entry->held) entry->allocator->release(offset);
  entry->held.clear();
}

size_t StepGraphs::arena_bytes() const { return arena_ && arena_->base ? arena_->allocator.capacity() : 0; }

StepGraphs::StepGraphs() = default;

StepGraphs::~StepGraphs() {
  graphs_.clear();
  pending_.reset();
  arena_.reset();
  if (staging_) cudaFreeHost(staging_);
  if (done_) cudaEventDestroy(static_cast<cudaEvent_t>(done_));
}

Status StepGraphs::prepare() {
  if (arena_) return Status::success();
  cudaEvent_t done = nullptr;
  if (cudaEventCreateWithFlags(&done, cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    return graph_error("cudaEventCreate failed");
  }
  done_ = done;
  if (cudaHostAlloc(&staging_, kStagingBytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    staging_ = nullptr;
    return graph_error("no pinned host memory for input staging");
  }
  staging_bytes_ = kStagingBytes;
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  const size_t capacity = std::clamp(free_bytes / 4, kMinArenaBytes, kMaxArenaBytes);
  auto arena = std::make_unique<Arena>(capacity);
  if (cudaMalloc(reinterpret_cast<void**>(&arena->base), arena->allocator.capacity()) != cudaSuccess) {
    cudaGetLastError();
    arena->base = nullptr;
    return graph_error("no device memory for the graph arena (" + std::to_string(capacity >> 20) + " MiB)");
  }
  {
    std::lock_guard lock(g_arenas_mutex);
    g_arenas.push_back({arena->base, arena->allocator.capacity(), &arena->allocator});
  }
  arena_ = std::move(arena);
  return Status::success();
}

Result<GraphPhase> StepGraphs::begin(int64_t key, void* stream) {
  if (mode_ != Mode::eager) return graph_error("a step graph is already open");
  TROUPE_TRY(prepare());
  cudaEventSynchronize(static_cast<cudaEvent_t>(done_));  // the last launch no longer reads the staging
  failure_.clear();
  launched_ = false;
  next_tensor_ = next_upload_ = 0;
  key_ = key;
  if (auto it = graphs_.find(key); it != graphs_.end()) {
    current_ = it->second.get();
    mode_ = Mode::replay;
    return GraphPhase::replay;
  }
  pending_ = std::make_unique<Graph>();
  current_ = pending_.get();
  staging_used_ = 0;
  if (cudaError_t err = cudaStreamBeginCapture(as_stream(stream), cudaStreamCaptureModeRelaxed); err != cudaSuccess) {
    cudaGetLastError();
    pending_.reset();
    current_ = nullptr;
    return graph_error(std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(err));
  }
  mode_ = Mode::capture;
  recording_started();
  return GraphPhase::capture;
}

Status StepGraphs::end(bool launch, void* stream) {
  if (mode_ == Mode::eager) return graph_error("no step graph is open");
  Graph* graph = current_;
  if (mode_ == Mode::capture) {
    mode_ = Mode::eager;
    current_ = nullptr;
    std::unique_ptr<Graph> recorded = std::move(pending_);
    cudaGraph_t captured = nullptr;
    cudaError_t err = cudaStreamEndCapture(as_stream(stream), &captured);
    recording_ended();
    if (err == cudaSuccess && launch && failure_.empty() && captured != nullptr)
      err = cudaGraphInstantiate(&recorded->exec, captured, 0);
    if (captured) cudaGraphDestroy(captured);
    cudaGetLastError();
    if (!launch) return Status::success();
    if (!failure_.empty()) return graph_error(failure_);
    if (err != cudaSuccess || recorded->exec == nullptr)
      return graph_error(std::string("recording failed: ") + cudaGetErrorString(err));
    graphs_[key_] = std::move(recorded);
  } else {
    mode_ = Mode::eager;
    current_ = nullptr;
    if (!launch) return Status::success();
    if (failure_.empty() && (next_tensor_ != graph->tensors.size() || next_upload_ != graph->uploads.size()))
      failure_ = "the step made fewer calls than its recording";
    if (!failure_.empty()) {
      graphs_.erase(key_);
      return graph_error(failure_);
    }
  }
  if (!launched_) {
    current_ = graph;
    launch_current(stream);
    current_ = nullptr;
  }
  launched_ = false;
  if (!failure_.empty()) {
    graphs_.erase(key_);
    return graph_error(failure_);
  }
  return Status::success();
}

void StepGraphs::launch_current(void* stream) {
  launched_ = true;
  if (cudaError_t err = cudaGraphLaunch(current_->exec, as_stream(stream)); err != cudaSuccess) {
    cudaGetLastError();
    fail(std::string("cudaGraphLaunch: ") + cudaGetErrorString(err));
    return;
  }
  cudaEventRecord(static_cast<cudaEvent_t>(done_), as_stream(stream));
}

void StepGraphs::clear() {
  if (mode_ == Mode::eager) graphs_.clear();
}

void StepGraphs::fail(const std::string& why) {
  if (failure_.empty()) failure_ = why;
}

Tensor StepGraphs::placeholder(DType dtype, std::vector<int64_t> shape) {
  const size_t nbytes = size_t(numel_of(shape)) * dtype_size(dtype);
  return wrap_device(arena_ ? arena_->base : nullptr, nbytes, keep_bytes, dtype, std::move(shape));
}

Tensor StepGraphs::arena_tensor(DType dtype, std::vector<int64_t> shape) {
  const size_t nbytes = size_t(numel_of(shape)) * dtype_size(dtype);
  std::optional<size_t> offset;
  {
    std::lock_guard lock(g_arenas_mutex);
    offset = arena_->allocator.allocate(nbytes);
  }
  if (!offset) {
    fail("the graph arena (" + std::to_string(arena_->allocator.capacity() >> 20) + " MiB) is full");
    return placeholder(dtype, std::move(shape));
  }
  return wrap_device(arena_->base + *offset, nbytes, release_arena_bytes, dtype, std::move(shape));
}

Tensor StepGraphs::forward_tensor(DType dtype, std::vector<int64_t> shape) {
  if (mode_ == Mode::capture) {
    Tensor t = arena_tensor(dtype, shape);
    current_->tensors.push_back({t.raw(), dtype, std::move(shape), Tensor()});
    return t;
  }
  if (next_tensor_ >= current_->tensors.size()) {
    fail("the step allocates more tensors than its recording");
    return placeholder(dtype, std::move(shape));
  }
  Graph::Slot& slot = current_->tensors[next_tensor_++];
  if (slot.dtype != dtype || slot.shape != shape) {
    fail("a tensor's shape differs from the recording's");
    return placeholder(dtype, std::move(shape));
  }
  if (!slot.replayed.defined())
    slot.replayed = wrap_device(slot.data, size_t(numel_of(shape)) * dtype_size(dtype), keep_bytes, dtype, shape);
  return slot.replayed;
}

Tensor StepGraphs::op_tensor(DType dtype, std::vector<int64_t> shape) {
  if (mode_ != Mode::capture) return placeholder(dtype, std::move(shape));  // replay launches nothing
  return arena_tensor(dtype, std::move(shape));
}

Tensor StepGraphs::upload(const Tensor& host, void* stream) {
  const size_t nbytes = host.nbytes();
  if (mode_ == Mode::replay) {
    if (next_upload_ >= current_->uploads.size() || current_->uploads[next_upload_].nbytes != nbytes) {
      fail("the step's inputs differ in size from the recording's");
      return host;
    }
    Graph::Upload& u = current_->uploads[next_upload_++];
    std::memcpy(static_cast<char*>(staging_) + u.offset, host.raw(), nbytes);
    // Every input is staged: launch now, and let the rest of the host replay (which launches
    // nothing) overlap the step. end() still checks the calls; a mismatch drops the recording and
    // the step runs again eagerly, rewriting whatever this launch wrote.
    if (next_upload_ == current_->uploads.size() && failure_.empty()) launch_current(stream);
    // The recorded device copy, so ops that get it later don't stage it again.
    if (!u.replayed.defined()) u.replayed = wrap_device(u.device, nbytes, keep_bytes, host.dtype(), host.shape());
    return u.replayed;
  }
  const size_t offset = (staging_used_ + 255) / 256 * 256;
  if (offset + nbytes > staging_bytes_) {
    fail("the step's inputs exceed the " + std::to_string(staging_bytes_ >> 20) + " MiB staging memory");
    return placeholder(host.dtype(), host.shape());
  }
  std::memcpy(static_cast<char*>(staging_) + offset, host.raw(), nbytes);
  Tensor d = arena_tensor(host.dtype(), host.shape());
  if (nbytes > 0) {
    const cudaError_t err = cudaMemcpyAsync(d.raw(), static_cast<char*>(staging_) + offset, nbytes,
                                            cudaMemcpyHostToDevice, as_stream(stream));
    if (err != cudaSuccess) {
      cudaGetLastError();
      fail(std::string("recording an input copy failed: ") + cudaGetErrorString(err));
    }
  }
  staging_used_ = offset + nbytes;
  current_->uploads.push_back({offset, nbytes, d.raw(), Tensor()});
  return d;
}

}  // namespace troupe::cuda

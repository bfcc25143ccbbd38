#pragma once
// Reads a list of items (tensors, or fused groups of tensors read back to back into one buffer)
// from files on a few threads, ahead of a consumer that takes them one by one, in memory bounded
// by a byte budget. A load then reads the disk while the consumer converts and uploads what was
// read before: the load's time is the slower of the two instead of their sum.
//
//   items (in the order the consumer will most likely take them) --> chunks of `chunk_bytes`
//   thread i takes the next chunk; a chunk that starts an item first allocates the item's host
//   tensor (in a reused ring of memory when it has room), if held_bytes + item bytes <= budget_bytes (or nothing is held: one item larger than
//   the budget still goes); else the readers wait until the consumer takes something.
//   take(i): waits while item i is read or will be; returns its tensor and frees its budget.
//
// NOTE: the consumer never waits on something only it can unblock: when item i has not started
// and the readers are stalled on the budget (the consumer holds the tensors they wait for), or
// have stopped, take(i) reads item i itself on the calling thread (preads on up to 4 threads).
// So taking items out of order is correct, only slower; an item nobody takes holds its budget
// until destruction.
//
// Errors: a short or failed read marks that item failed; take() returns the error, naming the
// item and the file ("the file ends early" for a truncated one). Nothing else stops.
// The destructor (or cancel()) stops the readers after their current chunk and joins them.
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/host_ring.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class ReadAhead {
 public:
  // Bytes [offset, offset + nbytes) of `path`.
  struct Part {
    std::string path;
    uint64_t offset = 0;
    uint64_t nbytes = 0;
  };
  // One host tensor of `dtype` and `shape`, filled by `parts` back to back (their sizes sum to
  // its bytes).
  struct Item {
    std::string name;
    DType dtype = DType::u8;
    std::vector<int64_t> shape;
    std::vector<Part> parts;
  };
  struct Options {
    int num_threads = 4;
    uint64_t chunk_bytes = 16ull << 20;
    uint64_t budget_bytes = 1ull << 30;
    // Items are read into one reused region of this size (runtime/host_ring; at most the items'
    // total) when it has room, else into fresh tensors; 0: always fresh.
    uint64_t ring_bytes = 1280ull << 20;  // the budget and the items being uploaded
  };

  // Starts the readers. Items whose parts do not add up to dtype x shape are failed items.
  ReadAhead(std::vector<Item> items, Options options);
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  size_t num_items() const { return items_.size(); }
  // The index of the item named `name`, or -1.
  int64_t find(const std::string& name) const;
  // Item `index`'s tensor (see above). invalid_argument for an index out of range or taken before.
  // NOTE: take() and cancel() are called from one thread, the consumer's.
  Result<Tensor> take(size_t index);
  // Stops the readers (items not yet read are then read by take() itself) and joins them.
  void cancel();

  // For tests and benchmarks: bytes of items allocated and not taken, their peak, bytes the
  // readers read, and items take() had to read itself.
  uint64_t held_bytes() const;
  uint64_t peak_held_bytes() const;
  uint64_t bytes_read() const;
  size_t num_read_by_consumer() const;
  // Items read into the reused ring (the rest: fresh tensors).
  size_t num_in_ring() const;
  // Seconds take() spent waiting for the readers or reading itself: near the load's time when
  // the disk is the limit, near zero when the consumer is.
  double wait_seconds() const;

 private:
  enum class State : uint8_t { pending, reading, ready, claimed, taken };
  struct Chunk {
    size_t item = 0;
    size_t part = 0;
    uint64_t offset = 0;  // in the part
    uint64_t size = 0;
    uint64_t at = 0;  // in the item's tensor
  };
  struct Slot {
    State state = State::pending;
    uint64_t nbytes = 0;
    size_t num_chunks = 0;
    size_t chunks_done = 0;
    Tensor tensor;
    std::string error;  // the first failed chunk's reason
    bool counted = false;  // allocated by a reader: its bytes are in held_
  };

  static bool is_readers_job(State state);
  void work();
  bool can_start_locked(const Slot& slot) const;
  bool readers_stuck_locked() const;
  int fd_for(const std::string& path, std::map<std::string, int>* fds);
  std::string read_chunk(const Chunk& chunk, char* dst, std::map<std::string, int>* fds);
  Result<Tensor> read_myself(size_t index);
  Error item_error(size_t index, const std::string& why) const;

  std::vector<Item> items_;
  std::map<std::string, size_t> index_;
  std::vector<Chunk> chunks_;
  Options options_;
  std::shared_ptr<HostRing> ring_;

  mutable std::mutex mutex_;
  std::condition_variable readers_cv_;   // budget freed, an item claimed, stop
  std::condition_variable consumer_cv_;  // a chunk read, readers stuck on the budget
  std::vector<Slot> slots_;
  size_t next_chunk_ = 0;
  uint64_t held_ = 0;
  uint64_t peak_held_ = 0;
  uint64_t read_ = 0;
  size_t read_by_consumer_ = 0;
  size_t in_ring_ = 0;
  double wait_s_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace troupe

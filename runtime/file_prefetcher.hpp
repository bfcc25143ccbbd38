#pragma once
// Reads byte ranges of files into the page cache on several threads, ahead of a consumer that
// then finds them there (a memory-mapped checkpoint: one thread's page faults read a disk at a
// fraction of its rate; parallel reads of large chunks reach it).
//
//   ranges (in the order the consumer reads them) --> chunks of `chunk_bytes`
//   thread i takes the next chunk while chunk_end <= consumed() + window_bytes; pread() into a
//   scratch buffer (the bytes land in the page cache; the copy is dropped)
//
// The window bounds the page cache a load holds beyond what it consumed, so a stage of a model
// larger than the host's memory does not evict its own earlier reads. Read errors stop that range
// quietly: the consumer's own read reports them. The destructor stops the threads and joins.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace troupe {

class FilePrefetcher {
 public:
  struct Range {
    std::string path;
    uint64_t begin = 0;
    uint64_t end = 0;
  };
  struct Options {
    int num_threads = 8;
    uint64_t chunk_bytes = 16ull << 20;
    uint64_t window_bytes = 8ull << 30;
    // posix_fadvise(WILLNEED) per chunk instead of a pread into scratch: the kernel starts the
    // reads and nothing is copied (a consumer that preads itself, as load_model does, needs no
    // more); bytes_read() then counts bytes asked for.
    bool hint_only = false;
  };

  FilePrefetcher(std::vector<Range> ranges, Options options);
  ~FilePrefetcher();
  FilePrefetcher(const FilePrefetcher&) = delete;
  FilePrefetcher& operator=(const FilePrefetcher&) = delete;

  // The consumer's position: bytes of the ranges (in order) it has read so far.
  void consumed(uint64_t bytes);
  uint64_t total_bytes() const { return total_; }
  uint64_t bytes_read() const { return read_.load(); }
  // Blocks until every chunk has been read (or failed); for tests and benchmarks.
  void wait_all();

 private:
  struct Chunk {
    size_t range = 0;
    uint64_t offset = 0;  // in the file
    uint64_t size = 0;
    uint64_t end_in_order = 0;  // position of the chunk's end in the ranges' total
  };
  void work();

  std::vector<Range> ranges_;
  std::vector<Chunk> chunks_;
  Options options_;
  uint64_t total_ = 0;
  std::atomic<uint64_t> read_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  size_t next_ = 0;        // next chunk to hand out
  size_t finished_ = 0;    // chunks read or failed
  uint64_t consumed_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace troupe

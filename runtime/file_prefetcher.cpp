#include "runtime/file_prefetcher.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <map>

namespace troupe {

FilePrefetcher::FilePrefetcher(std::vector<Range> ranges, Options options)
    : ranges_(std::move(ranges)), options_(options) {
  options_.chunk_bytes = std::max<uint64_t>(options_.chunk_bytes, 4096);
  options_.num_threads = std::max(options_.num_threads, 1);
  for (size_t r = 0; r < ranges_.size(); ++r) {
    for (uint64_t off = ranges_[r].begin; off < ranges_[r].end; off += options_.chunk_bytes) {
      const uint64_t size = std::min(options_.chunk_bytes, ranges_[r].end - off);
      total_ += size;
      chunks_.push_back(Chunk{r, off, size, total_});
    }
  }
  const int threads = int(std::min<size_t>(size_t(options_.num_threads), chunks_.size()));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

FilePrefetcher::~FilePrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void FilePrefetcher::consumed(uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes <= consumed_) return;
    consumed_ = bytes;
  }
  cv_.notify_all();
}

void FilePrefetcher::wait_all() {
  std::unique_lock<std::mutex> lock(mutex_);
  consumed_ = total_;  // nobody consumes in a test of the reads alone
  cv_.notify_all();
  cv_.wait(lock, [&] { return finished_ == chunks_.size() || stop_; });
}

void FilePrefetcher::work() {
  std::vector<char> scratch(options_.hint_only ? 0 : options_.chunk_bytes);
  std::map<size_t, int> fds;  // range -> descriptor, this thread's own
  for (;;) {
    Chunk chunk;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] {
        return stop_ || next_ == chunks_.size() ||
               chunks_[next_].end_in_order <= consumed_ + options_.window_bytes;
      });
      if (stop_ || next_ == chunks_.size()) break;
      chunk = chunks_[next_++];
    }
    auto it = fds.find(chunk.range);
    if (it == fds.end()) it = fds.emplace(chunk.range, ::open(ranges_[chunk.range].path.c_str(), O_RDONLY | O_CLOEXEC)).first;
    uint64_t done = 0;
    if (it->second >= 0) {
      if (options_.hint_only) {
        // The kernel reads the chunk into the page cache: no copy to a scratch buffer.
        if (::posix_fadvise(it->second, off_t(chunk.offset), off_t(chunk.size), POSIX_FADV_WILLNEED) == 0) done = chunk.size;
      } else {
        while (done < chunk.size) {
          const ssize_t n = ::pread(it->second, scratch.data(), chunk.size - done, off_t(chunk.offset + done));
          if (n <= 0) break;
          done += uint64_t(n);
        }
      }
    }
    read_ += done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++finished_;
    }
    cv_.notify_all();
  }
  for (auto& [range, fd] : fds)
    if (fd >= 0) ::close(fd);
}

}  // namespace troupe

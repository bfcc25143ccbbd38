#include "runtime/read_ahead.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

#include "runtime/tensor_view.hpp"

namespace troupe {
namespace {

// Reads [offset, offset + nbytes) of `fd` into dst; "" or why not.
std::string pread_all(int fd, uint64_t offset, uint64_t nbytes, char* dst) {
  uint64_t done = 0;
  while (done < nbytes) {
    const ssize_t n = ::pread(fd, dst + done, size_t(nbytes - done), off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "the file ends early";
    done += uint64_t(n);
  }
  return "";
}

}  // namespace

bool ReadAhead::is_readers_job(State state) { return state == State::pending || state == State::reading; }

ReadAhead::ReadAhead(std::vector<Item> items, Options options) : items_(std::move(items)), options_(options) {
  options_.chunk_bytes = std::max<uint64_t>(options_.chunk_bytes, 4096);
  options_.num_threads = std::max(options_.num_threads, 1);
  slots_.resize(items_.size());
  for (size_t i = 0; i < items_.size(); ++i) {
    const Item& item = items_[i];
    Slot& slot = slots_[i];
    index_.emplace(item.name, i);
    uint64_t sum = 0;
    for (const Part& p : item.parts) sum += p.nbytes;
    const uint64_t expected = uint64_t(numel_of(item.shape)) * dtype_size(item.dtype);
    if (sum != expected) {
      slot.state = State::ready;
      slot.error = ": its file ranges hold " + std::to_string(sum) + " bytes but " + std::string(dtype_name(item.dtype)) +
                   " " + shape_to_string(item.shape) + " needs " + std::to_string(expected);
      continue;
    }
    slot.nbytes = sum;
    if (sum == 0) {
      slot.state = State::ready;
      slot.tensor = Tensor::empty(item.dtype, item.shape);
      continue;
    }
    uint64_t at = 0;
    for (size_t p = 0; p < item.parts.size(); ++p) {
      for (uint64_t off = 0; off < item.parts[p].nbytes; off += options_.chunk_bytes) {
        const uint64_t size = std::min(options_.chunk_bytes, item.parts[p].nbytes - off);
        chunks_.push_back(Chunk{i, p, off, size, at});
        at += size;
        ++slot.num_chunks;
      }
    }
  }
  uint64_t total = 0;
  for (const Slot& slot : slots_) total += slot.nbytes;
  if (options_.ring_bytes > 0 && total > 0) ring_ = HostRing::create(size_t(std::min(options_.ring_bytes, total)));
  const size_t num_threads = std::min<size_t>(size_t(options_.num_threads), chunks_.size());
  for (size_t t = 0; t < num_threads; ++t) threads_.emplace_back([this] { work(); });
}

ReadAhead::~ReadAhead() { cancel(); }

void ReadAhead::cancel() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  readers_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

int64_t ReadAhead::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : int64_t(it->second);
}

bool ReadAhead::can_start_locked(const Slot& slot) const {
  return held_ == 0 || held_ + slot.nbytes <= options_.budget_bytes;
}

bool ReadAhead::readers_stuck_locked() const {
  size_t c = next_chunk_;
  while (c < chunks_.size() && !is_readers_job(slots_[chunks_[c].item].state)) ++c;
  if (c == chunks_.size()) return false;
  const Slot& slot = slots_[chunks_[c].item];
  return slot.state == State::pending && !can_start_locked(slot);
}

int ReadAhead::fd_for(const std::string& path, std::map<std::string, int>* fds) {
  auto it = fds->find(path);
  if (it == fds->end()) it = fds->emplace(path, ::open(path.c_str(), O_RDONLY | O_CLOEXEC)).first;
  return it->second;
}

Error ReadAhead::item_error(size_t index, const std::string& why) const {
  return make_error(ErrorCode::corrupt_data, "reading tensor '" + items_[index].name + "'" + why);
}

std::string ReadAhead::read_chunk(const Chunk& chunk, char* dst, std::map<std::string, int>* fds) {
  const Part& part = items_[chunk.item].parts[chunk.part];
  const int fd = fd_for(part.path, fds);
  if (fd < 0) return " from " + part.path + ": cannot open: " + std::strerror(errno);
  const std::string why = pread_all(fd, part.offset + chunk.offset, chunk.size, dst + chunk.at);
  return why.empty() ? why : " from " + part.path + ": " + why;
}

void ReadAhead::work() {
  std::map<std::string, int> fds;  // this thread's own descriptors
  for (;;) {
    Chunk chunk;
    char* dst = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      for (;;) {
        if (stop_) break;
        // Items the consumer read itself (claimed, then taken) are skipped.
        while (next_chunk_ < chunks_.size() && !is_readers_job(slots_[chunks_[next_chunk_].item].state)) ++next_chunk_;
        if (next_chunk_ == chunks_.size()) break;
        Slot& slot = slots_[chunks_[next_chunk_].item];
        if (slot.state == State::pending) {
          if (!can_start_locked(slot)) {
            consumer_cv_.notify_all();  // a consumer waiting for a later item must now read it itself
            readers_cv_.wait(lock);
            continue;
          }
          const Item& item = items_[chunks_[next_chunk_].item];
          try {
            if (ring_) slot.tensor = ring_->allocate(item.dtype, item.shape);
            if (slot.tensor.defined()) ++in_ring_;
            else slot.tensor = Tensor::empty(item.dtype, item.shape);
          } catch (const std::bad_alloc&) {
            slot.error = ": out of host memory for " + std::to_string(slot.nbytes) + " bytes";
            slot.state = State::ready;
            next_chunk_ += slot.num_chunks;  // an item's chunks are consecutive; this was its first
            consumer_cv_.notify_all();
            continue;
          }
          slot.state = State::reading;
          slot.counted = true;
          held_ += slot.nbytes;
          peak_held_ = std::max(peak_held_, held_);
        }
        chunk = chunks_[next_chunk_++];
        dst = static_cast<char*>(slot.tensor.raw());
        break;
      }
      if (dst == nullptr) break;
    }
    const std::string why = read_chunk(chunk, dst, &fds);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Slot& slot = slots_[chunk.item];
      if (why.empty()) read_ += chunk.size;
      if (!why.empty() && slot.error.empty()) slot.error = why;
      if (++slot.chunks_done == slot.num_chunks) slot.state = State::ready;
    }
    consumer_cv_.notify_all();
  }
  for (auto& [path, fd] : fds)
    if (fd >= 0) ::close(fd);
}

Result<Tensor> ReadAhead::take(size_t index) {
  const auto start = std::chrono::steady_clock::now();
  auto add_wait = [&] { wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  std::unique_lock<std::mutex> lock(mutex_);
  if (index >= slots_.size())
    return make_error(ErrorCode::invalid_argument, "read-ahead: no item " + std::to_string(index));
  Slot& slot = slots_[index];
  if (slot.state == State::taken || slot.state == State::claimed)
    return make_error(ErrorCode::invalid_argument, "read-ahead: tensor '" + items_[index].name + "' taken twice");
  for (;;) {
    if (slot.state == State::ready) break;
    // stop_: cancel() joined the readers, so nothing is in flight; a partly read item is read again.
    if (stop_ || (slot.state == State::pending && readers_stuck_locked())) {
      slot.state = State::claimed;
      ++read_by_consumer_;
      lock.unlock();
      auto tensor = read_myself(index);
      lock.lock();
      slot.state = State::taken;
      if (slot.counted) held_ -= slot.nbytes;
      slot.tensor = Tensor();
      add_wait();
      lock.unlock();
      readers_cv_.notify_all();
      return tensor;
    }
    consumer_cv_.wait(lock);
  }
  slot.state = State::taken;
  if (slot.counted) held_ -= slot.nbytes;
  Tensor tensor = std::move(slot.tensor);
  slot.tensor = Tensor();
  const std::string error = slot.error;
  add_wait();
  lock.unlock();
  readers_cv_.notify_all();
  if (!error.empty()) return item_error(index, error);
  return tensor;
}

Result<Tensor> ReadAhead::read_myself(size_t index) {
  constexpr size_t kMaxThreads = 4;
  const Item& item = items_[index];
  Slot& slot = slots_[index];  // claimed: no reader touches it
  if (!slot.error.empty() && slot.num_chunks == 0) return item_error(index, slot.error);  // parts do not add up
  Tensor tensor = slot.tensor;
  if (!tensor.defined()) {
    try {
      tensor = Tensor::empty(item.dtype, item.shape);
    } catch (const std::bad_alloc&) {
      return item_error(index, ": out of host memory for " + std::to_string(slot.nbytes) + " bytes");
    }
  }
  std::vector<Chunk> chunks;
  for (const Chunk& c : chunks_)
    if (c.item == index) chunks.push_back(c);
  char* dst = static_cast<char*>(tensor.raw());
  std::atomic<size_t> next{0};
  std::vector<std::string> errors(std::min(kMaxThreads, std::max<size_t>(chunks.size(), 1)));
  auto run = [&](size_t t) {
    std::map<std::string, int> fds;
    for (size_t c; errors[t].empty() && (c = next++) < chunks.size();) errors[t] = read_chunk(chunks[c], dst, &fds);
    for (auto& [path, fd] : fds)
      if (fd >= 0) ::close(fd);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < errors.size(); ++t) threads.emplace_back(run, t);
  run(0);
  for (auto& t : threads) t.join();
  for (const std::string& e : errors)
    if (!e.empty()) return item_error(index, e);
  return tensor;
}

uint64_t ReadAhead::held_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_;
}

uint64_t ReadAhead::peak_held_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return peak_held_;
}

uint64_t ReadAhead::bytes_read() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return read_;
}

double ReadAhead::wait_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return wait_s_;
}

size_t ReadAhead::num_in_ring() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_ring_;
}

size_t ReadAhead::num_read_by_consumer() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return read_by_consumer_;
}

}  // namespace troupe

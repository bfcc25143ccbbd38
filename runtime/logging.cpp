#include "runtime/logging.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace troupe::log {
namespace {

constexpr const char* kPattern = "%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v";

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

spdlog::level::level_enum& current_level() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

// The log file every component shares. NOTE: a write that fails (a full disk, /dev/full, an I/O
// error) never throws and never blocks the caller: the first failure is told once on stderr, the
// line is dropped, and later lines are tried again (the disk may free up).
struct LogFile {
  std::mutex mutex;
  std::FILE* file = nullptr;
  std::string path;
  bool reported = false;
  ~LogFile() { std::fclose(file); }

  void write(const char* data, size_t size) {
    std::lock_guard lock(mutex);
    const bool written = std::fwrite(data, 1, size, file) == size;
    if (std::fflush(file) == 0 && written) return;
    const int error = errno;
    std::clearerr(file);
    if (reported) return;
    reported = true;
    std::fprintf(stderr, "troupe: cannot write the log file %s (%s); its lines are dropped while that lasts\n",
                 path.c_str(), std::strerror(error));
    std::fflush(stderr);
  }
};

// One component's lines (with its own pattern) into the shared file.
class LogFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit LogFileSink(std::shared_ptr<LogFile> file) : file_(std::move(file)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    file_->write(line.data(), line.size());
  }
  void flush_() override {}  // every line is flushed as it is written

 private:
  std::shared_ptr<LogFile> file_;
};

std::shared_ptr<LogFile>& current_file() {  // null: stderr
  static std::shared_ptr<LogFile> file;
  return file;
}

spdlog::sink_ptr make_sink() {
  spdlog::sink_ptr sink;
  if (current_file()) sink = std::make_shared<LogFileSink>(current_file());
  else sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  sink->set_pattern(kPattern);
  return sink;
}

}  // namespace

bool is_valid_level(const std::string& level_name) {
  return level_name == "off" || spdlog::level::from_str(level_name) != spdlog::level::off;
}

bool set_level(const std::string& level_name) {
  if (!is_valid_level(level_name)) return false;
  std::lock_guard lock(registry_mutex());
  current_level() = spdlog::level::from_str(level_name);
  spdlog::set_level(current_level());
  return true;
}

bool set_file(const std::string& path, std::string* error) {
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    if (error != nullptr) *error = "cannot open the log file " + path + ": " + std::strerror(errno);
    return false;
  }
  auto shared = std::make_shared<LogFile>();
  shared->file = file;
  shared->path = path;
  std::lock_guard lock(registry_mutex());
  current_file() = std::move(shared);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& logger) { logger->sinks() = {make_sink()}; });
  return true;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  std::lock_guard lock(registry_mutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = std::make_shared<spdlog::logger>(component, make_sink());
  spdlog::register_logger(logger);
  logger->set_level(current_level());
  return logger;
}

}  // namespace troupe::log

#include "runtime/bench_record.hpp"

#include <cstdlib>

#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

std::string command_output(const std::string& command) {
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    std::array<char, 256> buffer;
    while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) out.append(buffer.data(), n);
    pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

std::string host_device_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return model + " (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
}

std::string source_commit() {
  // A bundle run on another machine has no checkout there: the caller says which commit it is.
  if (const char* given = std::getenv("TROUPE_COMMIT"); given != nullptr && *given != '\0') return given;
  std::string commit = command_output("git -C '" TROUPE_SOURCE_DIR "' rev-parse --short HEAD 2>/dev/null");
  return commit.empty() ? "unknown" : commit;
}

std::string today() {
  std::time_t now = std::time(nullptr);
  char buffer[16];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d", std::gmtime(&now));
  return buffer;
}

Result<std::string> write_bench_records(const std::vector<BenchRecord>& records, const std::string& stem,
                                        const std::string& path, const std::string& command,
                                        const std::string& device) {
  const std::string file = path.empty() ? std::string(TROUPE_SOURCE_DIR) + "/bench/results/" + stem + "_" + today() + ".json" : path;
  nlohmann::json out = nlohmann::json::array();
  const std::string device_name = device.empty() ? host_device_name() : device;
  const std::string date = today(), commit = source_commit();
  for (const auto& r : records) {
    nlohmann::json j{{"metric", r.metric}, {"value", r.value}, {"unit", r.unit},
                     {"limit", r.limit ? nlohmann::json(*r.limit) : nlohmann::json()},
                     {"fraction_of_limit", r.fraction_of_limit ? nlohmann::json(*r.fraction_of_limit) : nlohmann::json()},
                     {"device", device_name}, {"date", date}, {"commit", commit}, {"command", command}};
    if (!r.note.empty()) j["note"] = r.note;
    for (const auto& [key, value] : r.extra) {  // whole numbers as JSON integers
      const bool whole = std::floor(value) == value && std::fabs(value) < 9e15;
      j[key] = whole ? nlohmann::json(static_cast<int64_t>(value)) : nlohmann::json(value);
    }
    out.push_back(j);
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  std::ofstream stream(file);
  if (!stream) return make_error(ErrorCode::not_found, "cannot write " + file);
  stream << nlohmann::json{{"records", out}}.dump(2) << "\n";
  if (!stream) return make_error(ErrorCode::internal, "failed writing " + file);
  return file;
}

}  // namespace troupe

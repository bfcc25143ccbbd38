// The safetensors reader on untrusted files. The input is one of two folders, by its first byte:
//   'S' + bytes: model.safetensors = bytes (header length, JSON header, data section)
//   'I' + index JSON + "\n--shard--\n" + bytes: model.safetensors.index.json and one shard,
//       model-00001-of-00001.safetensors.
// Every tensor the store accepts is read back as fp32 (touching every byte it claims).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/weight_store.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("troupe_fuzz_safetensors_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fs::path& dir = scratch_dir();
  fs::remove(dir / "model.safetensors");
  fs::remove(dir / "model.safetensors.index.json");
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 'I') {
    const std::string separator = "\n--shard--\n";
    const size_t at = rest.find(separator);
    write(dir / "model.safetensors.index.json", rest.substr(0, at));
    write(dir / "model-00001-of-00001.safetensors",
          at == std::string::npos ? std::string() : rest.substr(at + separator.size()));
  } else {
    write(dir / "model.safetensors", rest);
  }
  auto store = troupe::WeightStore::open(dir.string());
  if (!store.ok()) return 0;
  for (const std::string& name : store->names()) (void)store->read_f32(name);
  return 0;
}

// The weights of a checkpoint folder: one `model.safetensors` or shards listed by an index.
#include "runtime/weight_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/safetensors_file.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// The shard names of `weight_map` must stay inside the model folder.
bool is_safe_shard_name(const std::string& name) {
  if (name.empty()) return false;
  const fs::path path(name);
  if (path.is_absolute()) return false;
  for (const auto& part : path) {
    if (part == "..") return false;
  }
  return true;
}

// Reads the index's weight_map: tensor name -> shard file name.
Result<std::map<std::string, std::string>> read_weight_map(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "cannot read " + index_path);
  std::stringstream text;
  text << in.rdbuf();
  const auto root = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return make_error(ErrorCode::corrupt_data, index_path + ": not a valid JSON object");
  }
  auto map_it = root.find("weight_map");
  if (map_it == root.end() || !map_it->is_object()) {
    return make_error(ErrorCode::corrupt_data, index_path + ": missing object 'weight_map'");
  }
  std::map<std::string, std::string> weight_map;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it.value().is_string() || !is_safe_shard_name(it.value().get<std::string>())) {
      return make_error(ErrorCode::corrupt_data, index_path + ": weight_map entry for tensor '" + it.key() +
                                                     "' is not a file name inside the model folder");
    }
    weight_map[it.key()] = it.value().get<std::string>();
  }
  return weight_map;
}

// Reads [offset, offset + nbytes) of `fd` into dst; "" or why not.
std::string pread_all(int fd, uint64_t offset, size_t nbytes, char* dst) {
  size_t done = 0;
  while (done < nbytes) {
    const ssize_t n = ::pread(fd, dst + done, nbytes - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "the file ends early";
    done += size_t(n);
  }
  return "";
}

}  // namespace

WeightStore::WeightStore() = default;
WeightStore::WeightStore(WeightStore&&) noexcept = default;
WeightStore& WeightStore::operator=(WeightStore&&) noexcept = default;
WeightStore::~WeightStore() = default;

Result<WeightStore> WeightStore::open(const std::string& model_dir) {
  WeightStore store;
  store.model_dir_ = model_dir;
  const fs::path dir(model_dir);
  const std::string index_path = (dir / kIndexFile).string();
  const std::string single_path = (dir / kSingleFile).string();
  std::error_code ec;

  // Each shard once, in name order; tensors from every shard, each name in exactly one file.
  auto add_file = [&store](const std::string& path, const std::string& listed_by) -> Status {
    auto file = SafetensorsFile::open(path);
    if (!file.ok()) {
      Error error = file.error();
      if (!listed_by.empty()) error.message = "shard listed in " + listed_by + ": " + error.message;
      return error;
    }
    for (const TensorView& view : (*file)->tensors()) {
      auto [it, inserted] = store.tensors_.emplace(view.name, view);
      if (!inserted) {
        return make_error(ErrorCode::corrupt_data, "tensor '" + view.name + "' appears in both " + it->second.file +
                                                       " and " + view.file);
      }
    }
    store.files_.push_back(std::move(file.value()));
    return Status::success();
  };

  if (fs::exists(index_path, ec)) {
    auto weight_map = read_weight_map(index_path);
    if (!weight_map.ok()) return weight_map.error();
    std::map<std::string, std::string> shard_paths;  // shard name -> path
    std::map<std::string, std::string> first_tensor;  // shard name -> a tensor it holds (for errors)
    for (const auto& [tensor, shard] : *weight_map) {
      shard_paths[shard] = (dir / shard).string();
      first_tensor.emplace(shard, tensor);
    }
    for (const auto& [shard, path] : shard_paths) {
      TROUPE_TRY(add_file(path, index_path + " for tensor '" + first_tensor[shard] + "'"));
    }
    for (const auto& [tensor, shard] : *weight_map) {
      auto it = store.tensors_.find(tensor);
      const std::string& shard_path = shard_paths[shard];
      if (it == store.tensors_.end() || it->second.file != shard_path) {
        return make_error(ErrorCode::corrupt_data, "tensor '" + tensor + "' listed in " + index_path +
                                                       " is missing from its shard " + shard_path);
      }
    }
  } else if (fs::exists(single_path, ec)) {
    TROUPE_TRY(add_file(single_path, ""));
  } else {
    std::string message = "no model.safetensors or model.safetensors.index.json in " + model_dir;
    if (!fs::exists(dir, ec)) {
      message += " (no such directory)";
    } else if (!fs::is_directory(dir, ec)) {
      message += " (not a directory)";
    }
    return make_error(ErrorCode::not_found, message);
  }
  return store;
}

Result<uint64_t> WeightStore::offset_in_file(const TensorView& view) const {
  const SafetensorsFile* file = nullptr;
  for (const auto& f : files_)
    if (f->path() == view.file) file = f.get();
  const char* begin = file ? static_cast<const char*>(file->mapping()) : nullptr;
  const char* at = static_cast<const char*>(view.data);
  if (file == nullptr || at < begin || uint64_t(at - begin) + view.nbytes > file->file_size())
    return make_error(ErrorCode::invalid_argument, "tensor '" + view.name + "' is not in this store's " + view.file);
  return uint64_t(at - begin);
}

Status WeightStore::read_into(const TensorView& view, void* dst) const {
  constexpr size_t kChunkBytes = size_t(16) << 20;
  constexpr size_t kMaxThreads = 4;
  auto where = offset_in_file(view);
  if (!where.ok()) return where.error();
  const uint64_t offset = where.value();
  const int fd = ::open(view.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::not_found, "cannot open " + view.file + ": " + std::strerror(errno));
  char* out = static_cast<char*>(dst);
  const size_t num_chunks = (view.nbytes + kChunkBytes - 1) / kChunkBytes;
  std::string error;
  if (num_chunks <= 1) {
    error = pread_all(fd, offset, view.nbytes, out);
  } else {
    std::atomic<size_t> next{0};
    std::vector<std::string> errors(std::min(kMaxThreads, num_chunks));
    std::vector<std::thread> threads;
    for (size_t t = 0; t < errors.size(); ++t)
      threads.emplace_back([&, t] {
        for (size_t c; errors[t].empty() && (c = next++) < num_chunks;) {
          const size_t from = c * kChunkBytes;
          errors[t] = pread_all(fd, offset + from, std::min(kChunkBytes, view.nbytes - from), out + from);
        }
      });
    for (auto& thread : threads) thread.join();
    for (const std::string& e : errors)
      if (error.empty()) error = e;
  }
  ::close(fd);
  if (!error.empty())
    return make_error(ErrorCode::corrupt_data, "reading tensor '" + view.name + "' from " + view.file + ": " + error);
  return Status::success();
}

bool WeightStore::has(const std::string& name) const { return tensors_.count(name) != 0; }

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) out.push_back(name);
  return out;
}

Result<TensorView> WeightStore::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return make_error(ErrorCode::not_found, "tensor '" + name + "' not found in " + model_dir_);
  }
  return it->second;
}

Result<TensorView> WeightStore::get(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  auto view = get(name);
  if (!view.ok()) return view;
  if (view->shape != expected_shape) {
    return make_error(ErrorCode::corrupt_data, "tensor '" + name + "' in " + view->file + " has shape " +
                                                   shape_to_string(view->shape) + ", expected " +
                                                   shape_to_string(expected_shape));
  }
  return view;
}

Result<std::vector<float>> WeightStore::read_f32(const std::string& name,
                                                 const std::vector<int64_t>& expected_shape) const {
  auto view = expected_shape.empty() ? get(name) : get(name, expected_shape);
  if (!view.ok()) return view.error();
  std::vector<float> out(size_t(view->numel()));
  if (!convert_to_f32(view->dtype, view->data, out.size(), out.data())) {
    return make_error(ErrorCode::unsupported, "tensor '" + name + "' in " + view->file + " has dtype " +
                                                  std::string(dtype_name(view->dtype)) +
                                                  ", which cannot be read as fp32");
  }
  return out;
}

}  // namespace troupe

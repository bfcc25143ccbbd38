// One memory-mapped `.safetensors` file: header parsing and validation.
#include "runtime/safetensors_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

using json = nlohmann::json;

Error file_error(ErrorCode code, const std::string& path, const std::string& what) {
  return make_error(code, "safetensors file " + path + ": " + what);
}

Error tensor_error(const std::string& path, const std::string& name, const std::string& what) {
  return make_error(ErrorCode::corrupt_data, "safetensors file " + path + ": tensor '" + name + "': " + what);
}

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// A JSON value as a non-negative int64, or false.
bool as_count(const json& value, uint64_t* out) {
  if (!value.is_number_unsigned()) {
    // Non-negative integers parse as unsigned; accept a signed one only when it is >= 0.
    if (!value.is_number_integer() || value.get<int64_t>() < 0) return false;
    *out = uint64_t(value.get<int64_t>());
    return true;
  }
  *out = value.get<uint64_t>();
  return *out <= uint64_t(std::numeric_limits<int64_t>::max());
}

}  // namespace

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const ErrorCode code = errno == ENOENT ? ErrorCode::not_found : ErrorCode::invalid_argument;
    return file_error(code, path, std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return file_error(ErrorCode::invalid_argument, path, "not a regular file");
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    return file_error(ErrorCode::corrupt_data, path,
                      "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (mapping == MAP_FAILED) {
    return file_error(ErrorCode::internal, path, std::string("mmap failed: ") + std::strerror(mmap_errno));
  }

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = mapping;
  file->size_ = size;

  const auto* bytes = static_cast<const uint8_t*>(mapping);
  const uint64_t header_size = read_u64_le(bytes);
  if (header_size > kMaxHeaderBytes) {
    return file_error(ErrorCode::corrupt_data, path,
                      "header length " + std::to_string(header_size) + " exceeds the limit of " +
                          std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_size > size - 8) {
    return file_error(ErrorCode::corrupt_data, path,
                      "header length " + std::to_string(header_size) + " runs past the end of the file (" +
                          std::to_string(size) + " bytes; truncated?)");
  }
  const size_t data_begin = 8 + size_t(header_size);
  TROUPE_TRY(file->parse_header(bytes + 8, size_t(header_size), bytes + data_begin, size - data_begin));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) ::munmap(mapping_, size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::parse_header(const uint8_t* header, size_t header_size, const uint8_t* data,
                                     size_t data_size) {
  const json root = json::parse(header, header + header_size, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return file_error(ErrorCode::corrupt_data, path_, "header is not valid JSON");
  if (!root.is_object()) return file_error(ErrorCode::corrupt_data, path_, "header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Span> spans;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (entry.is_object()) {
        for (auto m = entry.begin(); m != entry.end(); ++m) {
          if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
        }
      }
      continue;
    }
    if (!entry.is_object()) return tensor_error(path_, name, "entry is not a JSON object");

    TensorView view;
    view.name = name;
    view.file = path_;

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return tensor_error(path_, name, "missing string 'dtype'");
    const std::string dtype_str = dtype_it->get<std::string>();
    if (!parse_dtype(dtype_str, &view.dtype)) return tensor_error(path_, name, "unknown dtype '" + dtype_str + "'");

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) return tensor_error(path_, name, "missing array 'shape'");
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& dim : *shape_it) {
      uint64_t d = 0;
      if (!as_count(dim, &d)) return tensor_error(path_, name, "shape " + shape_it->dump() + " has a dimension that is not a non-negative integer");
      view.shape.push_back(int64_t(d));
      overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
    }
    uint64_t expected_bytes = 0;
    if (overflow || __builtin_mul_overflow(numel, uint64_t(dtype_size(view.dtype)), &expected_bytes)) {
      return tensor_error(path_, name, "shape " + shape_it->dump() + " is too large");
    }

    auto offsets_it = entry.find("data_offsets");
    uint64_t begin = 0, end = 0;
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !as_count((*offsets_it)[0], &begin) || !as_count((*offsets_it)[1], &end)) {
      return tensor_error(path_, name, "'data_offsets' must be [begin, end] of non-negative integers");
    }
    const std::string offsets_str = "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) return tensor_error(path_, name, "data_offsets " + offsets_str + " has begin > end");
    if (end > data_size) {
      return tensor_error(path_, name, "data_offsets " + offsets_str + " run past the data section of " +
                                           std::to_string(data_size) + " bytes (file truncated?)");
    }
    if (end - begin != expected_bytes) {
      return tensor_error(path_, name, "data_offsets " + offsets_str + " hold " + std::to_string(end - begin) +
                                           " bytes but " + std::string(dtype_name(view.dtype)) + " " +
                                           shape_to_string(view.shape) + " needs " + std::to_string(expected_bytes));
    }
    view.data = data + begin;
    view.nbytes = size_t(end - begin);
    spans.push_back({begin, end, tensors_.size()});
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(view));
  }

  // No two non-empty tensors may share bytes.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  const Span* previous = nullptr;
  for (const Span& span : spans) {
    if (span.begin == span.end) continue;
    if (previous && span.begin < previous->end) {
      return tensor_error(path_, tensors_[span.tensor].name,
                          "data overlaps tensor '" + tensors_[previous->tensor].name + "'");
    }
    previous = &span;
  }
  return Status::success();
}

}  // namespace troupe

#pragma once
// One memory-mapped `.safetensors` file.
//
// Layout: [u64 little-endian header length N][N bytes of JSON header][data section]. The header
// maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, offsets relative to
// the data section; the optional "__metadata__" entry (string -> string) is kept but not checked
// further. Every check failure names the file and the tensor.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

class SafetensorsFile {
 public:
  // Largest JSON header accepted (the reference implementation uses the same bound).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  // Maps `path` read-only and validates the header: the file holds the 8-byte length, the header
  // lies inside the file and is a JSON object, every tensor has a known dtype, a shape of
  // non-negative ints, offsets inside the data section, end - begin == numel * dtype size, and no
  // two tensors overlap.
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }
  // The start of the mapping: a view's offset in the file is `data - mapping()`.
  const void* mapping() const { return mapping_; }
  // The tensors in header order; `data` points into the mapping, valid while this object lives.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The tensor named `name`, or nullptr.
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  Status parse_header(const uint8_t* header, size_t header_size, const uint8_t* data, size_t data_size);

  std::string path_;
  void* mapping_ = nullptr;  // the whole file, PROT_READ
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

}  // namespace troupe

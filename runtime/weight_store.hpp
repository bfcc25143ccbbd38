#pragma once
// The weights of a Hugging Face checkpoint folder: `model.safetensors`, or shards
// `model-0000X-of-0000N.safetensors` listed by `model.safetensors.index.json`. Files are
// memory-mapped; a tensor's bytes are touched only when a caller reads them, so a pipeline stage
// that reads only its layers' tensors pages in only those.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

class SafetensorsFile;  // one mapped file (runtime/safetensors_file.hpp)

class WeightStore {
 public:
  // Opens every weight file of `model_dir`, validating headers (offsets inside the file, sizes
  // matching dtype x shape, no overlap). Errors name the file and the tensor.
  static Result<WeightStore> open(const std::string& model_dir);

  WeightStore();
  WeightStore(WeightStore&&) noexcept;
  WeightStore& operator=(WeightStore&&) noexcept;
  ~WeightStore();

  bool has(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  // The tensor, or not_found naming the tensor and the folder.
  Result<TensorView> get(const std::string& name) const;
  // The tensor checked against an expected shape: corrupt_data naming tensor, file and both shapes.
  Result<TensorView> get(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  // The tensor converted to fp32 (checked against expected_shape when it is not empty).
  Result<std::vector<float>> read_f32(const std::string& name,
                                      const std::vector<int64_t>& expected_shape = {}) const;
  // Copies `view`'s bytes (a tensor of this store) into `dst` (view.nbytes of room) with preads of
  // 16 MiB on up to 4 threads: no page faults of the mapping, and several requests in flight on a
  // cold file. Errors (a short or failed read) name the tensor and the file.
  Status read_into(const TensorView& view, void* dst) const;
  // Where `view` (a tensor of this store) starts in its file; invalid_argument when it is not one.
  Result<uint64_t> offset_in_file(const TensorView& view) const;

 private:
  std::string model_dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace troupe

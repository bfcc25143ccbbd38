#pragma once
// An owning tensor: dtype, shape, device and shared storage. Views (reshape, row slices) share the
// storage of the tensor they come from. fp32 is the CPU backend's compute dtype.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.hpp"

namespace troupe {

enum class Device : uint8_t { cpu, cuda };

// Raw bytes on one device. The CPU storage owns host memory; a CUDA backend supplies its own
// allocate/free through `deleter`.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::cpu;
  void (*deleter)(void*) = nullptr;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;

  // Uninitialized host tensor.
  static Tensor empty(DType dtype, std::vector<int64_t> shape);
  static Tensor zeros(DType dtype, std::vector<int64_t> shape);
  static Tensor from_f32(const std::vector<float>& values, std::vector<int64_t> shape);
  static Tensor from_i32(const std::vector<int32_t>& values, std::vector<int64_t> shape);
  // Wraps storage made elsewhere (a device allocation).
  static Tensor wrap(std::shared_ptr<Storage> storage, DType dtype, std::vector<int64_t> shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t axis) const { return shape_[size_t(axis < 0 ? axis + dim() : axis)]; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }

  void* raw() { return static_cast<char*>(storage_->data) + offset_; }
  const void* raw() const { return static_cast<const char*>(storage_->data) + offset_; }
  template <class T>
  T* data() { return static_cast<T*>(raw()); }
  template <class T>
  const T* data() const { return static_cast<const T*>(raw()); }

  // Same storage, new shape with the same element count (-1 in one axis is inferred).
  Tensor reshape(std::vector<int64_t> shape) const;
  // Rows [begin, begin + count) of axis 0; shares storage.
  Tensor rows(int64_t begin, int64_t count) const;
  // Whether `next` starts in this tensor's storage right where this tensor's bytes end (row slices
  // of one buffer, as the loader reads a fused q/k/v or gate/up).
  bool is_followed_by(const Tensor& next) const;
  // This tensor's storage from its first byte seen as `shape` (same dtype): the bytes after it
  // included. Throws std::out_of_range past the storage's end. Drops the block scale.
  Tensor extended_to(std::vector<int64_t> shape) const;
  // A deep copy on the host.
  Tensor clone() const;
  // Host copy of an fp32 tensor's values (for tests and logits).
  std::vector<float> to_f32_vector() const;

  // FP8 block-quantized weights (runtime/fp8_block.hpp): an F8_E4M3 [rows, cols] weight carries its
  // F32 scale_inv blocks [ceil(rows / 128), ceil(cols / 128)], on the same device. reshape and
  // clone keep it; rows() drops it (a row slice no longer lines up with its blocks).
  bool has_block_scale() const { return block_scale_ != nullptr; }
  const Tensor& block_scale() const { return *block_scale_; }
  void set_block_scale(Tensor scale) { block_scale_ = std::make_shared<const Tensor>(std::move(scale)); }

  // A per-tensor scale: element i stands for element(i) * tensor_scale(). An F8_E4M3 KV cache
  // component carries its layer's k_scale or v_scale here (runtime/kv_cache.hpp), so the cache ops
  // read it with the tensor. 1 unless set; reshape, rows and clone keep it; ops on other dtypes
  // ignore it.
  float tensor_scale() const { return tensor_scale_; }
  void set_tensor_scale(float scale) { tensor_scale_ = scale; }

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  DType dtype_ = DType::f32;
  std::vector<int64_t> shape_;
  std::shared_ptr<const Tensor> block_scale_;
  float tensor_scale_ = 1.0f;
};

int64_t numel_of(const std::vector<int64_t>& shape);

}  // namespace troupe

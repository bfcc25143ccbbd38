#include "runtime/tensor.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace troupe {

namespace {
void free_host(void* p) { std::free(p); }
}  // namespace


Storage::~Storage() {
  if (data != nullptr && deleter != nullptr) deleter(data);
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Tensor::numel() const { return numel_of(shape_); }

Tensor Tensor::empty(DType dtype, std::vector<int64_t> shape) {
  auto storage = std::make_shared<Storage>();
  storage->nbytes = size_t(numel_of(shape)) * dtype_size(dtype);
  // 64-byte alignment for vector loads; aligned_alloc needs a multiple of the alignment. Large
  // tensors (weights, a CPU KV cache) are 2 MiB aligned and asked to be backed by huge pages:
  // their first touch then faults 512 times less (a load writes every weight byte once).
  constexpr size_t kHugePage = size_t(2) << 20;
  const bool large = storage->nbytes >= 16 * kHugePage;
  const size_t align = large ? kHugePage : 64;
  size_t padded = (storage->nbytes + align - 1) / align * align;
  storage->data = std::aligned_alloc(align, padded == 0 ? 64 : padded);
  if (storage->data == nullptr) throw std::bad_alloc();
  if (large) ::madvise(storage->data, padded, MADV_HUGEPAGE);  // a hint: refused, nothing changes
  storage->deleter = free_host;
  return wrap(std::move(storage), dtype, std::move(shape));
}

Tensor Tensor::zeros(DType dtype, std::vector<int64_t> shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_f32(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = empty(DType::f32, std::move(shape));
  if (size_t(t.numel()) != values.size()) throw std::invalid_argument("Tensor::from_f32: size mismatch");
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_i32(const std::vector<int32_t>& values, std::vector<int64_t> shape) {
  Tensor t = empty(DType::i32, std::move(shape));
  if (size_t(t.numel()) != values.size()) throw std::invalid_argument("Tensor::from_i32: size mismatch");
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::wrap(std::shared_ptr<Storage> storage, DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.storage_ = std::move(storage);
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  int64_t known = 1;
  int infer_axis = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      infer_axis = int(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer_axis >= 0) shape[size_t(infer_axis)] = known == 0 ? 0 : numel() / known;
  if (numel_of(shape) != numel()) throw std::invalid_argument("Tensor::reshape: element count differs");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t count) const {
  if (shape_.empty() || begin < 0 || count < 0 || begin + count > shape_[0]) {
    throw std::out_of_range("Tensor::rows: range outside axis 0");
  }
  int64_t row_elems = shape_[0] == 0 ? 0 : numel() / shape_[0];
  Tensor t = *this;
  t.offset_ += size_t(begin * row_elems) * dtype_size(dtype_);
  t.shape_[0] = count;
  t.block_scale_.reset();
  return t;
}

bool Tensor::is_followed_by(const Tensor& next) const {
  return storage_ != nullptr && storage_ == next.storage_ && offset_ + nbytes() == next.offset_;
}

Tensor Tensor::extended_to(std::vector<int64_t> shape) const {
  if (storage_ == nullptr || offset_ + size_t(numel_of(shape)) * dtype_size(dtype_) > storage_->nbytes)
    throw std::out_of_range("Tensor::extended_to: shape runs past the storage");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.block_scale_.reset();
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, shape_);
  std::memcpy(t.raw(), raw(), nbytes());
  t.block_scale_ = block_scale_;
  t.tensor_scale_ = tensor_scale_;
  return t;
}

std::vector<float> Tensor::to_f32_vector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  if (!convert_to_f32(dtype_, raw(), out.size(), out.data())) {
    throw std::invalid_argument("Tensor::to_f32_vector: not a float tensor");
  }
  return out;
}

}  // namespace troupe

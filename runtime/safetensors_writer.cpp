// Writes `.safetensors` files.
#include "runtime/safetensors_writer.hpp"

#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/tensor_view.hpp"

namespace troupe {
namespace {

Error writer_error(ErrorCode code, const std::string& path, const std::string& what) {
  return make_error(code, "writing safetensors file " + path + ": " + what);
}

}  // namespace

Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                         const std::vector<std::pair<std::string, std::string>>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const NamedTensor& tensor : tensors) {
    const std::string where = "tensor '" + tensor.name + "': ";
    if (tensor.name.empty() || tensor.name == "__metadata__") {
      return writer_error(ErrorCode::invalid_argument, path, where + "invalid name");
    }
    if (!seen.insert(tensor.name).second) {
      return writer_error(ErrorCode::invalid_argument, path, where + "duplicate name");
    }
    uint64_t numel = 1;
    for (int64_t d : tensor.shape) {
      if (d < 0) return writer_error(ErrorCode::invalid_argument, path, where + "negative dimension");
      numel *= uint64_t(d);
    }
    const uint64_t expected = numel * dtype_size(tensor.dtype);
    if (tensor.bytes.size() != expected) {
      return writer_error(ErrorCode::invalid_argument, path,
                          where + std::to_string(tensor.bytes.size()) + " bytes given but " +
                              std::string(dtype_name(tensor.dtype)) + " " + shape_to_string(tensor.shape) +
                              " needs " + std::to_string(expected));
    }
    header[tensor.name] = {{"dtype", std::string(dtype_name(tensor.dtype))},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string header_text = header.dump();
  while (header_text.size() % 8 != 0) header_text.push_back(' ');  // keeps the data 8-byte aligned

  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (!out) return writer_error(ErrorCode::invalid_argument, path, "cannot open for writing");
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header_text.size()) >> (8 * i));
  bool ok = std::fwrite(length, 1, 8, out) == 8 &&
            std::fwrite(header_text.data(), 1, header_text.size(), out) == header_text.size();
  for (const NamedTensor& tensor : tensors) {
    if (!ok) break;
    ok = tensor.bytes.empty() || std::fwrite(tensor.bytes.data(), 1, tensor.bytes.size(), out) == tensor.bytes.size();
  }
  ok = (std::fclose(out) == 0) && ok;
  if (!ok) return writer_error(ErrorCode::internal, path, "write failed");
  return Status::success();
}

NamedTensor make_named_tensor(std::string name, DType dtype, std::vector<int64_t> shape,
                              const std::vector<float>& values) {
  NamedTensor tensor{std::move(name), dtype, std::move(shape), {}};
  const size_t element = dtype_size(dtype);
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16) return tensor;
  tensor.bytes.resize(values.size() * element);
  for (size_t i = 0; i < values.size(); ++i) {
    uint8_t* dst = tensor.bytes.data() + i * element;
    if (dtype == DType::f32) {
      std::memcpy(dst, &values[i], 4);
    } else {
      const uint16_t bits = dtype == DType::f16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(dst, &bits, 2);
    }
  }
  return tensor;
}

}  // namespace troupe

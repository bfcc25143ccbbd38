// Backend's FP8 defaults (runtime/backend.hpp): keep host tensors on host backends; run
// linear_fp8_block as host dequantization (runtime/fp8_block.hpp's formula) + linear.
#include <stdexcept>
#include <string>

#include "runtime/backend.hpp"
#include "runtime/fp8_block.hpp"

namespace troupe {

Result<Tensor> Backend::upload_fp8_weight(const Tensor& host_fp8) {
  if (host_fp8.dtype() != DType::f8_e4m3 && host_fp8.dtype() != DType::f32)
    return make_error(ErrorCode::unsupported, name() + " backend: FP8 weights are F8_E4M3 bytes and F32 scales, not " +
                                                  std::string(dtype_name(host_fp8.dtype())));
  if (device() == Device::cpu && host_fp8.device() == Device::cpu) return host_fp8;
  return make_error(ErrorCode::unsupported, name() + " backend keeps no FP8 weights");
}

void Backend::linear_fp8_block(const Tensor& x, const Tensor& weight_fp8, const Tensor& scale_inv, Tensor out) {
  const Tensor w = weight_fp8.device() == Device::cpu ? weight_fp8 : to_host(weight_fp8);
  const Tensor s = scale_inv.device() == Device::cpu ? scale_inv : to_host(scale_inv);
  TensorView wv{"fp8 weight", "device", w.dtype(), w.shape(), w.raw(), w.nbytes()};
  TensorView sv{"fp8 scale_inv", "device", s.dtype(), s.shape(), s.raw(), s.nbytes()};
  Result<Tensor> dense = dequantize_fp8_block(wv, sv, 128, 128);
  if (!dense.ok()) throw std::invalid_argument(dense.error().message);
  Result<Tensor> on_device = upload_weight(dense.value());
  if (!on_device.ok()) throw std::invalid_argument(on_device.error().message);
  linear(x, on_device.value(), Tensor(), out);
}

}  // namespace troupe

#include "kernels/backend_factory.hpp"

#include "kernels/device_info.hpp"
#include "runtime/cpu_backend.hpp"
#include "runtime/logging.hpp"
#include "runtime/model_config.hpp"
#ifdef TROUPE_HAVE_CUDA
#include "kernels/cuda_backend.hpp"
#endif

namespace troupe::kernels {

Result<std::unique_ptr<Backend>> make_backend(const Config& config) {
  const DeviceInfo devices = config.device == "cpu" ? DeviceInfo{} : query_devices();
  if (config.device == "cuda" && devices.num_devices == 0)
    return make_error(ErrorCode::unavailable, "--device cuda: " + devices.why_none);
#ifdef TROUPE_HAVE_CUDA
  if (devices.num_devices > 0) {
    DType weight_dtype = config.dtype == "bfloat16" ? DType::bf16 : DType::f32;
    if (config.dtype == "auto" && !config.model.empty()) {
      auto model = ModelConfig::load(config.model);
      if (model.ok() && model->torch_dtype == "bfloat16") weight_dtype = DType::bf16;
    }
    auto cuda = CudaBackend::create(0, weight_dtype);
    if (!cuda.ok()) return cuda.error();
    log::get("engine")->debug("backend: cuda ({})", devices.name);
    return std::unique_ptr<Backend>(std::move(cuda.value()));
  }
#endif
  auto cpu = std::make_unique<CpuBackend>(config.num_threads);
  log::get("engine")->debug("backend: cpu ({} threads)", cpu->num_threads());
  return std::unique_ptr<Backend>(std::move(cpu));
}

}  // namespace troupe::kernels

#include "backends/backend_factory.hpp"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "backends/cuda/device_info.hpp"
#include "backends/fault_injecting_backend.hpp"
#include "backends/cpu_backend.hpp"
#include "runtime/logging.hpp"
#include "runtime/model_config.hpp"
#ifdef TROUPE_HAVE_CUDA
#include "backends/cuda/cuda_backend.hpp"
#endif

namespace troupe::backends {

namespace {

Result<std::unique_ptr<Backend>> make_device_backend(const Config& config, int64_t rank, int64_t num_ranks);

}  // namespace

Result<std::unique_ptr<Backend>> make_backend(const Config& config) { return make_backend(config, 0, 1); }

Result<std::unique_ptr<Backend>> make_backend(const Config& config, int64_t rank, int64_t num_ranks) {
  auto backend = make_device_backend(config, rank, num_ranks);
  if (!backend.ok()) return backend;
  TROUPE_TRY(backend.value()->set_fp8_kv_cache(config.fp8_kv_cache()));  // --kv-cache-dtype
  // Tests only: a device that fails on cue (backends/fault_injecting_backend.hpp).
  const char* inject = std::getenv("TROUPE_INJECT_FAULT");
  auto spec = parse_fault_spec(inject == nullptr ? "" : inject);
  if (!spec.ok()) return spec.error();
  if (spec->kind == FaultSpec::Kind::none) return backend;
  log::get("engine")->warn("TROUPE_INJECT_FAULT={}: this backend will fail on cue", inject);
  return std::unique_ptr<Backend>(std::make_unique<FaultInjectingBackend>(std::move(backend.value()), spec.value()));
}

namespace {

Result<std::unique_ptr<Backend>> make_device_backend(const Config& config, int64_t rank, int64_t num_ranks) {
  const cuda::DeviceInfo devices = config.device == "cpu" ? cuda::DeviceInfo{} : cuda::query_devices();
  if (config.device == "cuda" && devices.num_devices == 0)
    return make_error(ErrorCode::unavailable, "--device cuda: " + devices.why_none);
#ifdef TROUPE_HAVE_CUDA
  if (devices.num_devices > 0) {
    DType weight_dtype = config.dtype == "bfloat16" ? DType::bf16 : DType::f32;
    if (config.dtype == "auto" && !config.model.empty()) {
      auto model = ModelConfig::load(config.model);
      if (model.ok() && model->torch_dtype == "bfloat16") weight_dtype = DType::bf16;
    }
    // Stages placed past the last GPU share GPUs from the first again (one GPU, several stages).
    const int64_t base = config.first_device % devices.num_devices;
    if (base != config.first_device && rank == 0)
      log::get("engine")->warn("GPU {} does not exist: this stage shares GPU {}", config.first_device, base);
    const int64_t device = base + rank;
    if (device >= devices.num_devices)
      return make_error(ErrorCode::unavailable, "--tensor-parallel-size " + std::to_string(num_ranks) + " needs " +
                                                    std::to_string(num_ranks) + " GPUs from GPU " + std::to_string(base) + "; this machine has " +
                                                    std::to_string(devices.num_devices));
    auto gpu = cuda::CudaBackend::create(int(device), weight_dtype);
    if (!gpu.ok()) return gpu.error();
    log::get("engine")->debug("backend: cuda ({})", devices.name);
    return std::unique_ptr<Backend>(std::move(gpu.value()));
  }
#endif
  int64_t threads = config.num_threads;
  if (num_ranks > 1) {
    const int64_t all = threads > 0 ? threads : int64_t(std::thread::hardware_concurrency());
    threads = std::max<int64_t>(1, all / num_ranks);
  }
  auto cpu = std::make_unique<CpuBackend>(threads);
  log::get("engine")->debug("backend: cpu ({} threads)", cpu->num_threads());
  return std::unique_ptr<Backend>(std::move(cpu));
}

}  // namespace

}  // namespace troupe::backends

#include "backends/stage_model_factory.hpp"

#include "backends/backend_factory.hpp"
#include "runtime/logging.hpp"
#include "models/model_loader.hpp"
#include "models/tensor_parallel.hpp"
#include "models/tensor_parallel_model.hpp"
#include "runtime/thread_collective.hpp"
#ifdef TROUPE_HAVE_CUDA
#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_nccl_collective.hpp"
#endif

namespace troupe::backends {

Result<std::unique_ptr<Model>> load_stage_model(const Config& config, Backend& backend, LayerRange range) {
  const int64_t size = config.tensor_parallel_size;
  if (size <= 1) return load_model_with_format(config.model, config.load_format, backend, range);

  std::vector<TensorParallelRank> ranks(static_cast<size_t>(size));
  for (int64_t r = 1; r < size; ++r) {
    auto made = make_backend(config, r, size);
    if (!made.ok()) return made.error();
    if (made.value()->device() != backend.device())
      return make_error(ErrorCode::unavailable, "--tensor-parallel-size: rank " + std::to_string(r) +
                                                    " got a different device kind than rank 0");
    ranks[size_t(r)].backend = std::move(made.value());
  }
  std::vector<std::unique_ptr<Collective>> collectives;
  if (backend.device() == Device::cuda) {
#ifdef TROUPE_HAVE_CUDA
    std::vector<int> devices;
    devices.push_back(static_cast<cuda::CudaBackend&>(backend).device_index());
    for (int64_t r = 1; r < size; ++r) devices.push_back(static_cast<cuda::CudaBackend&>(*ranks[size_t(r)].backend).device_index());
    auto nccl = cuda::make_nccl_collectives(devices);
    if (!nccl.ok()) return nccl.error();
    collectives = std::move(nccl.value());
#endif
  } else {
    collectives = make_thread_collectives(size);
  }
  for (int64_t r = 0; r < size; ++r) {
    Backend& on = r == 0 ? backend : *ranks[size_t(r)].backend;
    auto shard = load_model_shard(config.model, config.load_format, on, range, *collectives[size_t(r)],
                                  config.all2all_backend == "all_to_all");
    if (!shard.ok()) return shard.error();
    ranks[size_t(r)].model = std::move(shard.value());
    ranks[size_t(r)].collective = std::move(collectives[size_t(r)]);
  }
  log::get("engine")->info("tensor parallel: {} ranks on {}; routed experts: {}", size, backend.name(),
                           config.all2all_backend);
  return std::unique_ptr<Model>(std::make_unique<TensorParallelModel>(std::move(ranks)));
}

}  // namespace troupe::backends

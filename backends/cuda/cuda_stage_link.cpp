// CudaBackend's part of the NCCL stage hand-off (runtime/nccl_stage_link.hpp,
// pipeline/nccl_stage_transport.hpp): what a link end needs from the stage's GPU.
#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_nccl_link_ops.hpp"

namespace troupe::cuda {

// A send reads what the stage's stream wrote: the link's own stream starts after this.
void CudaBackend::synchronize() { check(cudaStreamSynchronize(stream_), "synchronize"); }

std::string CudaBackend::device_id() const {
  char bus_id[64] = {0};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), device_index_) != cudaSuccess)
    return "cuda:" + std::to_string(device_index_);  // still names the GPU within this process
  return std::string("pci:") + bus_id;
}

Result<std::unique_ptr<NcclLinkOps>> CudaBackend::make_stage_link_ops() { return make_nccl_link_ops(device_index_); }

}  // namespace troupe::cuda

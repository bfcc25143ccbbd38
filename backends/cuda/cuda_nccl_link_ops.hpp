#pragma once
// NcclLinkOps over real NCCL for one GPU (runtime/nccl_stage_link.hpp drives it): a nonblocking
// communicator (ncclConfig_t::blocking = 0, so init and transfers never block the caller: their
// progress is polled through ncclCommGetAsyncError), its own non-blocking stream, one event per
// transfer. abort() is ncclCommAbort; the communicator is never ncclCommDestroy'ed.
// The caller must have finished writing a tensor it sends (its backend synchronized), as the
// host-staged path's copy to host does.
// NOTE: compiled here, never run: NCCL refuses two ranks on one GPU, and CI has no GPU.
#include <memory>

#include "runtime/nccl_stage_link.hpp"

namespace troupe::cuda {

std::unique_ptr<NcclLinkOps> make_nccl_link_ops(int device);

}  // namespace troupe::cuda

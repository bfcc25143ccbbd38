// Backend's default for the NCCL stage hand-off (runtime/backend.hpp): host memory has no NCCL.
#include "runtime/backend.hpp"
#include "runtime/nccl_stage_link.hpp"

namespace troupe {

Result<std::unique_ptr<NcclLinkOps>> Backend::make_stage_link_ops() {
  return make_error(ErrorCode::unsupported, "--stage-transport nccl needs a GPU backend; this stage computes on " +
                                                name() + " (use --stage-transport host)");
}

}  // namespace troupe

#include "pipeline/stage_wiring.hpp"

namespace troupe::cluster {
namespace {

Status refuse(const std::string& why) { return make_error(ErrorCode::invalid_argument, "wiring the stage: " + why); }

}  // namespace

Status check_stage_wiring(const ModelStageSpec& spec, const StageWiring& wiring) {
  const auto num_stages = size_t(spec.num_stages);
  if (wiring.key.group_id != spec.group_id || wiring.key.epoch != spec.epoch)
    return refuse("the wiring of group " + std::to_string(wiring.key.group_id) + " epoch " +
                  std::to_string(wiring.key.epoch) + " reached a stage of group " + std::to_string(spec.group_id) +
                  " epoch " + std::to_string(spec.epoch) + " (stale: the group restarted)");
  if (wiring.data_addresses.size() != num_stages)
    return refuse(std::to_string(wiring.data_addresses.size()) + " addresses for " + std::to_string(num_stages) +
                  " stages");
  if (!spec.uses_nccl()) return Status::success();
  if (wiring.nccl_unique_ids.size() != num_stages || wiring.device_ids.size() != num_stages)
    return refuse("--stage-transport nccl: " + std::to_string(wiring.nccl_unique_ids.size()) + " NCCL ids and " +
                  std::to_string(wiring.device_ids.size()) + " device ids for " + std::to_string(num_stages) +
                  " stages");
  for (size_t k = 0; k < num_stages; ++k) {
    if (wiring.nccl_unique_ids[k].size() != NcclLinkOps::kUniqueIdBytes)
      return refuse("stage " + std::to_string(k) + "'s NCCL unique id has " +
                    std::to_string(wiring.nccl_unique_ids[k].size()) + " bytes, not " +
                    std::to_string(NcclLinkOps::kUniqueIdBytes));
    if (wiring.device_ids[k].empty())
      return refuse("stage " + std::to_string(k) + " computes on no GPU; --stage-transport nccl needs one per stage");
  }
  // This stage's two links: to the next stage and from the previous one.
  const int64_t me = spec.stage_index;
  for (int64_t other : {next_stage(me, spec.num_stages), previous_stage(me, spec.num_stages)}) {
    if (wiring.device_ids[size_t(me)] != wiring.device_ids[size_t(other)]) continue;
    return refuse("--stage-transport nccl: stages " + std::to_string(std::min(me, other)) + " and " +
                  std::to_string(std::max(me, other)) + " share GPU " + wiring.device_ids[size_t(me)] +
                  ", and NCCL refuses two ranks on one GPU; give each stage its own GPU or use --stage-transport host");
  }
  return Status::success();
}

}  // namespace troupe::cluster

#pragma once
// What a stage learns about the others of its group epoch before it connects (the head's
// wire_group, or LocalPipeline in one process), and the checks made before anything connects.
//
//   prepare: every stage -> its tensor listener's address (host), and with --stage-transport
//            nccl the ncclUniqueId of the link it sends on (stage k -> k+1, the last -> the
//            first) and the GPU it computes on
//   stage_prepared -> head (collects them by stage) -> wire_group -> every stage: StageWiring
//   wire: check_stage_wiring, then stage k joins link k as its sender (rank 0) and link k-1 as
//         its receiver (rank 1), both within the wire timeout
//
// A group restart is a new epoch with new links and new ids: a wiring whose group or epoch is
// not the stage's own (a stale or misrouted wire_group) is refused before any id is used.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/stage_plan.hpp"
#include "runtime/nccl_stage_link.hpp"
#include "runtime/result.hpp"

namespace troupe::cluster {

struct StageWiring {
  std::vector<std::string> data_addresses;  // [num_stages]: tensor listeners ("" with nccl)
  int64_t num_kv_blocks = 0;                // the minimum every stage can hold
  StageLinkKey key;                         // the group epoch it was made for
  // --stage-transport nccl: [num_stages], stage k's id for its link to stage k+1 (mod N), and the
  // GPU each stage computes on ("<host>/<device id>"). Empty with host.
  std::vector<std::vector<uint8_t>> nccl_unique_ids;
  std::vector<std::string> device_ids;
};

// invalid_argument (naming what is wrong) unless `wiring` fits the stage of `spec`: an address per
// stage, this group and epoch, and with nccl an id of NCCL's size and a device id per stage, no
// two stages that share a link on one GPU (NCCL refuses two ranks on one device: such a launch
// would hang in ncclCommInitRank, so it is refused here, naming the stages and the GPU).
Status check_stage_wiring(const ModelStageSpec& spec, const StageWiring& wiring);

// The stage that sends to stage `stage_index` (the ring: the last stage sends the first logits).
inline int64_t previous_stage(int64_t stage_index, int64_t num_stages) {
  return (stage_index + num_stages - 1) % num_stages;
}
inline int64_t next_stage(int64_t stage_index, int64_t num_stages) { return (stage_index + 1) % num_stages; }

}  // namespace troupe::cluster

// The MoE token grouping's CPU reference (moe_align.hpp): a stable counting sort by expert.
#include "kernels/moe_align.hpp"

#include <cstddef>
#include <vector>

namespace troupe::kernels {

void moe_align_ref(const int32_t* ids, int64_t num_slots, int32_t num_experts, int32_t pad_to, int32_t* counts,
                   int32_t* offsets, int32_t* sorted_slots, int64_t capacity, int32_t* slot_pos) {
  for (int32_t e = 0; e < num_experts; ++e) counts[e] = 0;
  for (int64_t s = 0; s < num_slots; ++s)
    if (ids[s] >= 0 && ids[s] < num_experts) ++counts[ids[s]];
  offsets[0] = 0;
  for (int32_t e = 0; e < num_experts; ++e)
    offsets[e + 1] = offsets[e] + (counts[e] + pad_to - 1) / pad_to * pad_to;
  for (int64_t p = 0; p < capacity; ++p) sorted_slots[p] = -1;
  std::vector<int32_t> cursor(offsets, offsets + num_experts);
  for (int64_t s = 0; s < num_slots; ++s) {
    const int32_t e = ids[s];
    if (e < 0 || e >= num_experts) {
      slot_pos[s] = -1;
      continue;
    }
    const int32_t p = cursor[size_t(e)]++;
    sorted_slots[p] = int32_t(s);
    slot_pos[s] = p;
  }
}

}  // namespace troupe::kernels

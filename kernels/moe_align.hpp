#pragma once
// MoE token grouping: from the router's choices, the contiguous per-expert layout a grouped GEMM
// reads. With S = num_tokens * top_k slots (slot t * top_k + i is token t's i-th expert):
//   counts[e]        the slots routed to expert e (ids outside [0, E) are dropped: another rank's
//                    experts under expert parallelism)
//   offsets[e]       exclusive prefix sum of round_up(counts[e], pad_to); offsets[E] = the total
//   sorted_slots[p]  for p in [offsets[e], offsets[e] + counts[e]): expert e's slots in increasing
//                    slot order (so the layout is deterministic); -1 in each expert's padding
//                    [offsets[e] + counts[e], offsets[e + 1]) and in [offsets[E], capacity)
//   slot_pos[s]      the position p of slot s (-1 for a dropped slot): the combine's inverse map
// An expert with no slot has count 0 and an empty (unpadded) range. pad_to 1: no padding.
// Three layers: the __global__ kernel (moe_align.cu: one 1024-thread block; shared-memory counts,
// a block scan, then slots placed 1024 at a time, ranks from __match_any_sync and per-warp counts),
// this raw-pointer launcher, and the CPU reference (moe_align_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// The kernel's limit on E.
constexpr int32_t kMoeAlignMaxExperts = 512;

// The most positions the layout can take: S + min(E, S) * (pad_to - 1). sorted_slots needs that many.
inline int64_t moe_align_capacity(int64_t num_slots, int64_t num_experts, int64_t pad_to) {
  return num_slots + (num_slots < num_experts ? num_slots : num_experts) * (pad_to - 1);
}

// CPU reference. ids: [num_slots] i32; counts: [E]; offsets: [E + 1]; sorted_slots: [capacity]
// (capacity >= moe_align_capacity); slot_pos: [num_slots].
void moe_align_ref(const int32_t* ids, int64_t num_slots, int32_t num_experts, int32_t pad_to, int32_t* counts,
                   int32_t* offsets, int32_t* sorted_slots, int64_t capacity, int32_t* slot_pos);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as moe_align_ref. cudaErrorInvalidValue, nothing launched: num_slots < 0
// or > INT32_MAX, E outside 1..512, pad_to < 1, capacity < moe_align_capacity or > INT32_MAX.
// num_slots == 0 still writes counts, offsets and the -1s (one launch, for step graphs).
cudaError_t launch_moe_align(const int32_t* ids, int64_t num_slots, int32_t num_experts, int32_t pad_to,
                             int32_t* counts, int32_t* offsets, int32_t* sorted_slots, int64_t capacity,
                             int32_t* slot_pos, cudaStream_t stream);
#endif

}  // namespace troupe::kernels

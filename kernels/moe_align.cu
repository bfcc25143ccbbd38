// The MoE token grouping kernel (moe_align.hpp): one block of 1024 threads.
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/moe_align.hpp"

namespace troupe::kernels {
namespace {

constexpr int kAlignThreads = 1024;
constexpr int kAlignWarps = kAlignThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
  for (int o = 1; o < 32; o *= 2) {
    const int other = __shfl_up_sync(kFull, v, o);
    if (lane >= o) v += other;
  }
  return v;
}

// Shared memory: count[E], cursor[E] (ints), then warp_count[kAlignWarps][E] (a chunk's slots per
// warp and expert, <= 32, kept zero between chunks).
__global__ void __launch_bounds__(kAlignThreads)
    moe_align_kernel(const int32_t* ids, int64_t num_slots, int32_t num_experts, int32_t pad_to, int32_t* counts,
                     int32_t* offsets, int32_t* sorted_slots, int64_t capacity, int32_t* slot_pos) {
  extern __shared__ int smem[];
  int* count = smem;
  int* cursor = smem + num_experts;
  unsigned short* warp_count = reinterpret_cast<unsigned short*>(smem + 2 * num_experts);
  __shared__ int warp_total[kAlignWarps];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;

  for (int e = tid; e < num_experts; e += kAlignThreads) count[e] = 0;
  for (int i = tid; i < kAlignWarps * num_experts; i += kAlignThreads) warp_count[i] = 0;
  __syncthreads();
  for (int64_t s = tid; s < num_slots; s += kAlignThreads) {
    const int32_t e = ids[s];
    if (e >= 0 && e < num_experts) atomicAdd(&count[e], 1);
  }
  __syncthreads();

  // Exclusive scan of the padded counts, one expert a thread (E <= 1024).
  const int mine = tid < num_experts ? count[tid] : 0;
  const int padded = (mine + pad_to - 1) / pad_to * pad_to;
  int inclusive = warp_inclusive_scan(padded, lane);
  if (lane == 31) warp_total[warp] = inclusive;
  __syncthreads();
  if (warp == 0) warp_total[lane] = warp_inclusive_scan(warp_total[lane], lane);
  __syncthreads();
  if (warp > 0) inclusive += warp_total[warp - 1];
  const int total = warp_total[kAlignWarps - 1];
  if (tid < num_experts) {
    const int start = inclusive - padded;
    counts[tid] = mine;
    offsets[tid] = start;
    cursor[tid] = start;
    for (int p = start + mine; p < inclusive; ++p) sorted_slots[p] = -1;  // this expert's padding
    if (tid == num_experts - 1) offsets[num_experts] = total;
  }
  for (int64_t p = total + tid; p < capacity; p += kAlignThreads) sorted_slots[p] = -1;
  __syncthreads();

  // Place the slots in chunks of kAlignThreads, in slot order: a slot's position is its expert's
  // cursor + the chunk's earlier slots of that expert (earlier warps' counts, then earlier lanes).
  for (int64_t base = 0; base < num_slots; base += kAlignThreads) {
    const int64_t s = base + tid;
    int32_t e = s < num_slots ? ids[s] : -1;
    const bool valid = e >= 0 && e < num_experts;
    if (!valid) e = -1;
    const unsigned peers = __match_any_sync(kFull, e);
    const unsigned lower = peers & ((1u << lane) - 1u);
    const bool leader = lower == 0;
    if (valid && leader) warp_count[warp * num_experts + e] = (unsigned short)__popc(peers);
    __syncthreads();
    if (valid) {
      int p = cursor[e] + __popc(lower);
      for (int w = 0; w < warp; ++w) p += warp_count[w * num_experts + e];
      sorted_slots[p] = int32_t(s);
      slot_pos[s] = p;
    } else if (s < num_slots) {
      slot_pos[s] = -1;
    }
    __syncthreads();
    if (valid && leader) {
      atomicAdd(&cursor[e], __popc(peers));
      warp_count[warp * num_experts + e] = 0;
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t launch_moe_align(const int32_t* ids, int64_t num_slots, int32_t num_experts, int32_t pad_to,
                             int32_t* counts, int32_t* offsets, int32_t* sorted_slots, int64_t capacity,
                             int32_t* slot_pos, cudaStream_t stream) {
  if (bad_rows(num_slots) || num_experts < 1 || num_experts > kMoeAlignMaxExperts || pad_to < 1 ||
      capacity < moe_align_capacity(num_slots, num_experts, pad_to) || capacity > INT32_MAX)
    return cudaErrorInvalidValue;
  const size_t smem = size_t(num_experts) * (2 * sizeof(int) + kAlignWarps * sizeof(unsigned short));
  moe_align_kernel<<<1, kAlignThreads, smem, stream>>>(ids, num_slots, num_experts, pad_to, counts, offsets,
                                                       sorted_slots, capacity, slot_pos);
  return cudaGetLastError();
}

}  // namespace troupe::kernels

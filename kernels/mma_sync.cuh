#pragma once
// Warp-level tensor-core building blocks (sm_80+) shared by the MLA decode kernels
// (mla_decode_mma.cu, mla_decode_mma64.cu), the MLA prefill kernel (mla_prefill_mma.cu) and the GQA
// kernels (attention_decode_mma.cu, attention_prefill.cu):
// cp.async copies, ldmatrix, mma.sync m16n8k16 bf16 with fp32 accumulation, bf16x2 packing, the
// 16-byte-chunk swizzle of shared rows, named barriers. The Hopper kernels (wgmma.cuh) take their
// copies, packing and barriers from here too.
//
// Fragments of mma.sync.m16n8k16.row.col (PTX ISA "Matrix Fragments for mma.m16n8k16"), g = lane / 4,
// c = lane % 4: A 16x16: a0 = (row g, cols 2c, 2c+1), a1 = (g + 8, 2c..), a2 = (g, 2c + 8..),
// a3 = (g + 8, 2c + 8..). B 16x8 (k x n): b0 = (k 2c, 2c+1; n g), b1 = (k 2c + 8..; n g).
// C 16x8 fp32: c0, c1 = (row g, cols 2c, 2c+1), c2, c3 = (row g + 8, same cols).
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; register i gets (row lane / 4,
// cols 2 (lane % 4)..+1) of it, or with .trans (rows 2 (lane % 4)..+1, col lane / 4).
#include <cuda_bf16.h>

#include <cstdint>

namespace troupe::kernels::mma {

// Byte offset of 16-byte chunk `chunk` of `row` in an array of `row_bytes` rows whose chunks are
// stored as chunk ^ (row % 8): the 8 rows an ldmatrix phase reads (same logical chunk) fall in 8
// distinct bank groups. Rows must hold a multiple of 8 chunks.
__device__ __forceinline__ uint32_t swizzled(int row, int row_bytes, int chunk) {
  return uint32_t(row * row_bytes + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// cp.async: 16 bytes global -> shared; src_bytes 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
// Waits until at most N of this thread's most recent commit groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

// c += a b for one 16x8x16 step.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one bf16x2 register, lo in the low half (the lower column / key).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Barrier `id` (1..15; 0 is __syncthreads') among `threads` threads (a multiple of 32), which must
// all reach it; orders their shared-memory accesses like __syncthreads.
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// Arrives at barrier `id` without waiting: the producer's half of a handoff whose consumers wait
// with named_barrier(id, threads); `threads` counts both sides.
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace troupe::kernels::mma

#pragma once
// MLA decode attention in the absorbed form, over the paged latent cache
// [num_blocks, block_size, 1, kv_lora + rope] (entry = [latent | k_pe], runtime/kv_cache.hpp's
// layout with one head). kv_b_proj's rows [H * (nope + v), kv_lora] are per head h
// [W_UK_h (nope rows) | W_UV_h (v rows)]. With q = [q_nope | q_pe] per head:
//   q_abs[i, h]  = [q_nope_h @ W_UK_h | q_pe_h]                                   (mla_absorb_q)
//   o_lat[i, h]  = sum_j softmax_j(scale * q_abs[i, h] . entry_j) * latent_j        (this kernel)
//   out[i, h]    = W_UV_h @ o_lat[i, h]                                           (mla_unabsorb_out)
// which equals the expanded form (k_j = [W_UK_h latent_j | k_pe_j], v_j = W_UV_h latent_j).
// Kernel: one CTA per (head tile of up to 64 heads, token, partition of the keys). It stages 16
// cached entries at a time in shared memory (fp32), so each latent row is read from memory once
// per head tile (once per token for H <= 64; the two tiles of H = 128 run back to back, the
// second mostly from L2). Warp w owns 8 heads: scores, online softmax, and o_lat[8 heads, kv_lora]
// in registers (lanes split kv_lora). Long contexts split into partitions whose partial
// (max, sum, o_lat) a combine kernel merges, as attention_decode.hpp does. fp32 SIMT math.
// With a bf16 cache at DeepSeek's kv_lora 512 + rope 64 a tensor-core kernel with the same work
// unit and partials runs instead (mla_decode_kernel_for picks): mla_decode_mma.cu for head tiles of
// up to 32 heads, mla_decode_wgmma.cu (Hopper) or mla_decode_mma64.cu for 33..64 (R1's 128 heads:
// two tiles per token, launched side by side so the second CTA reads each latent row from L2).
// Three layers: the kernels (mla_decode.cu), these launchers, and the CPU references
// (mla_decode_ref.cpp: fp32 dot products, fp64 softmax sums; the absorption products too). On CUDA
// with bf16 weights and up to 8 tokens the products run as kernels/mla_absorb.hpp's kernels.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

constexpr int64_t kMlaHeadTile = 64;         // heads per CTA
constexpr int64_t kMlaSmallHeadTile = 16;    // heads per CTA of the tensor-core kernel at small batches
constexpr int64_t kMlaKeyTile = 16;          // cached entries staged per step
constexpr int64_t kMlaMinPartitionKeys = 64;
constexpr int64_t kMlaMaxPartitions = 128;
constexpr int64_t kMlaMaxLora = 512;

// CPU references. q_abs: [num_tokens, H, kv_lora + rope] (i-th computed token); cache: [num_blocks,
// block_size, 1, kv_lora + rope] fp32 or bf16 bits; positions, seq_of_token indexed by t = tokens[i]
// (tokens nullptr: t = i); block_tables: [num_seqs, max_blocks]; o_lat: [num_tokens, H, kv_lora].
// Token t attends to its sequence's cached positions [0, positions[t]].
void mla_decode_ref(const float* q_abs, const float* cache, const int32_t* positions, const int32_t* seq_of_token,
                    const int32_t* tokens, int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                    int64_t block_size, int64_t num_heads, int64_t kv_lora, int64_t rope, float scale, float* o_lat);
void mla_decode_ref(const float* q_abs, const uint16_t* cache, const int32_t* positions, const int32_t* seq_of_token,
                    const int32_t* tokens, int64_t num_tokens, const int32_t* block_tables, int64_t max_blocks,
                    int64_t block_size, int64_t num_heads, int64_t kv_lora, int64_t rope, float scale, float* o_lat);
// q_abs[i, h] = [q[i, h, :nope] @ W_UK_h | q[i, h, nope:]]. q: [n, H, nope + rope]; kv_b_weight:
// [H * (nope + v_dim), kv_lora] fp32 or bf16 bits; q_abs: [n, H, kv_lora + rope]. fp32 sums.
void mla_absorb_q_ref(const float* q, const float* kv_b_weight, float* q_abs, int64_t n, int64_t num_heads,
                      int64_t nope, int64_t rope, int64_t kv_lora, int64_t v_dim);
void mla_absorb_q_ref(const float* q, const uint16_t* kv_b_weight, float* q_abs, int64_t n, int64_t num_heads,
                      int64_t nope, int64_t rope, int64_t kv_lora, int64_t v_dim);
// out[i, h, c] = W_UV_h[c, :] . o_lat[i, h, :]. o_lat: [n, H, kv_lora]; out: [n, H, v_dim].
void mla_unabsorb_out_ref(const float* o_lat, const float* kv_b_weight, float* out, int64_t n, int64_t num_heads,
                          int64_t nope, int64_t kv_lora, int64_t v_dim);
void mla_unabsorb_out_ref(const float* o_lat, const uint16_t* kv_b_weight, float* out, int64_t n, int64_t num_heads,
                          int64_t nope, int64_t kv_lora, int64_t v_dim);

#ifdef TROUPE_HAVE_CUDA
// kv_lora % 4 == 0, rope % 4 == 0, 4 <= kv_lora <= 512.
bool mla_decode_supports(int64_t kv_lora, int64_t rope);
// The kernel launch_mla_decode_f32 runs: the tensor-core one (mla_decode_mma.cu: bf16 cache,
// kv_lora 512, rope 64, 16-byte aligned q_abs and cache as cudaMalloc gives; q_abs and the
// probabilities rounded to bf16, fp32 sums) or the fp32 SIMT one (mla_decode.cu: every other
// supported shape, and any fp32 cache).
enum class MlaDecodeKernel { simt_f32, mma_bf16 };
bool mla_decode_mma_supports(int64_t kv_lora, int64_t rope);
MlaDecodeKernel mla_decode_kernel_for(int64_t kv_lora, int64_t rope, bool bf16_cache);
// Heads per CTA of the tensor-core kernel: min(num_heads, kMlaHeadTile), or kMlaSmallHeadTile when
// the batch's 64-head tiles number at most num_sms / 8 (R1 on an H200: up to 8 tokens). Small batches
// otherwise split contexts into many partitions to fill the SMs, each CTA computing 64 heads over
// a few keys and writing 64 fp32 partial rows: at batch 1, ctx 1024 the 64-head kernel took 10.8 us
// and the combine of its 4 MB of partials 7.7 us (ncu, H200). Sixteen-head tiles give 8 CTAs per
// token, each re-reading the latent rows from L2. TROUPE_MLA_DECODE_HEAD_TILE=16|32|64 forces one.
int64_t mla_decode_head_tile(int64_t num_tokens, int64_t num_heads, int64_t num_sms);
// Partitions of the longest context, none shorter than kMlaMinPartitionKeys keys: the count whose
// num_tokens * head tiles (mla_decode_head_tile) * partitions CTAs (one per SM) finish soonest, counting the waves of
// CTAs over num_sms, each CTA's keys, a fixed cost per CTA and, past one partition, the partials it
// writes for the combine kernel; ties go to fewer partitions. R1 at 132 SMs: B 1 -> 16 (ctx 1024
// and 4096, 16-head tiles), B 64 and 128 -> 1.
int64_t mla_decode_num_partitions(int64_t num_tokens, int64_t num_heads, int64_t max_context, int64_t num_sms);
// Keys per partition: partition p covers keys [p * partition_keys, (p + 1) * partition_keys).
int64_t mla_decode_partition_keys(int64_t max_context, int64_t num_partitions);
// Floats of workspace (0 for one partition): [num_tokens, H, partitions, kv_lora] partial outputs,
// then maxima and sums.
int64_t mla_decode_workspace_floats(int64_t num_tokens, int64_t num_heads, int64_t kv_lora, int64_t num_partitions);

// Device pointers, shapes as mla_decode_ref. partition_keys from the helper above with max_context
// >= every computed token's position + 1, or 0: each token's context split evenly into the
// partitions, none shorter than kMlaMinPartitionKeys (split_kv_partials.cuh's partition_length: a
// short context leaves the last partitions empty, whose partial rows the tensor-core kernels leave
// unwritten and the merges do not read). workspace: mla_decode_workspace_floats floats (nullptr
// when 0). With more than one partition and merge_partials false, the combine kernel is not
// launched: the partials stay in the workspace for launch_mla_decode_combine_f32 or mla_absorb.hpp's
// launch_mla_unabsorb_partials_bf16 (o_lat is then not written). Unsupported shapes give
// cudaErrorInvalidValue; num_tokens == 0 does nothing.
cudaError_t launch_mla_decode_f32(const float* q_abs, const float* cache, const int32_t* positions,
                                  const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                  const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                  int64_t num_heads, int64_t kv_lora, int64_t rope, float scale,
                                  int64_t num_partitions, int64_t partition_keys, float* workspace, float* o_lat,
                                  cudaStream_t stream, bool merge_partials = true);
// The same over a bf16 cache: the tensor-core kernel where mla_decode_kernel_for says so, else the
// SIMT one (entries widened exactly to fp32 in shared memory).
cudaError_t launch_mla_decode_f32(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                  const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                  const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                  int64_t num_heads, int64_t kv_lora, int64_t rope, float scale,
                                  int64_t num_partitions, int64_t partition_keys, float* workspace, float* o_lat,
                                  cudaStream_t stream, bool merge_partials = true);
// The combine kernel alone: o_lat [num_tokens, H, kv_lora] from the workspace partials of
// num_partitions (2..kMlaMaxPartitions) partitions. cudaErrorInvalidValue otherwise.
cudaError_t launch_mla_decode_combine_f32(const float* workspace, int64_t num_tokens, int64_t num_heads,
                                          int64_t kv_lora, int64_t num_partitions, float* o_lat, cudaStream_t stream);
// The tensor-core kernel alone (mla_decode_mma.cu), arguments as above: o_lat for one partition,
// else the workspace partials that launch_mla_decode_f32's combine kernel merges.
cudaError_t launch_mla_decode_mma_partials(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                           const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                           const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                           int64_t num_heads, int64_t kv_lora, int64_t rope, float scale,
                                           int64_t num_partitions, int64_t partition_keys, float* workspace,
                                           float* o_lat, cudaStream_t stream);
// Its 64-head kernel (mla_decode_mma64.cu), which launch_mla_decode_mma_partials runs when a head
// tile holds more than 32 heads; no checks of its own (they are the caller's).
cudaError_t launch_mla_decode_mma64(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                    const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                    const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                    int64_t num_heads, float scale, int64_t num_partitions, int64_t partition_keys,
                                    float* workspace, float* o_lat, cudaStream_t stream);
// The same on Hopper warpgroup MMA (mla_decode_wgmma.cu), which launch_mla_decode_mma_partials takes
// instead of the 64-head kernel on sm_90 unless TROUPE_MLA_DECODE_WGMMA=0 (read at each launch, the
// A/B switch): on the H200 at R1's dims B 64 x ctx 4096 225 us against 308 (0.41 of the compute
// roofline against 0.31). cudaErrorNotSupported off sm_90.
cudaError_t launch_mla_decode_wgmma(const float* q_abs, const uint16_t* cache, const int32_t* positions,
                                    const int32_t* seq_of_token, const int32_t* tokens, int64_t num_tokens,
                                    const int32_t* block_tables, int64_t max_blocks, int64_t block_size,
                                    int64_t num_heads, float scale, int64_t num_partitions, int64_t partition_keys,
                                    float* workspace, float* o_lat, cudaStream_t stream);
#endif

}  // namespace troupe::kernels

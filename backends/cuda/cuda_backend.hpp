#pragma once
// The CUDA backend: the Backend ops on one GPU, fp32 compute (exact against the CPU reference;
// bf16 compute is the next step), cuBLAS for matrix products, kernels from kernels/ (one header
// per family). Inputs that arrive in host memory (token ids, hidden states from another stage) are
// uploaded on use.
// The ops run on the backend's own stream (a blocking one, so work other code puts on the legacy
// default stream stays ordered with them); decode steps can run as CUDA graphs
// (backends/cuda/cuda_step_graphs.hpp).
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/moe_experts.hpp"

#include "backends/cuda/cuda_step_graphs.hpp"
#include "backends/cuda/expert_streams.hpp"
#include "backends/cuda/pinned_upload.hpp"

struct CUstream_st;  // cudaStream_t is CUstream_st*
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace troupe::cuda {

// The element types CudaBackend's dense cache ops read (f8_e4m3: --kv-cache-dtype fp8).
bool is_kv_cache_dtype(DType dtype);

class CudaBackend final : public Backend, public MoeExpertsBackend {
 public:
  // Binds `device_index`; errors when no usable GPU is present. weight_dtype bf16 keeps matrices
  // (linear and embedding weights) in bf16: products of up to 8 tokens run in the GEMV kernel
  // (kernels/gemv.hpp: fp32 or bf16 activations, one pass over the weights), larger ones in cuBLAS with
  // bf16 inputs; both accumulate and output in fp32. With bf16 weights the products' inputs (the
  // normed hidden states, the MLP activation) are bf16 too (matmul_input_dtype): rmsnorm,
  // add_rmsnorm and silu_and_mul_packed round once when writing them, so no product converts its
  // x. The residual stream, q/k/v and attention math stay fp32; the KV cache is bf16
  // (kv_cache_dtype), written rounded to nearest even and widened exactly when read; with
  // --kv-cache-dtype fp8 it is e4m3 with per-tensor k/v scales (runtime/kv_cache.hpp).
  // Attention: sequences with one new token run the fp32 split-KV kernel (attention_decode.hpp);
  // with bf16 weights, prefill chunks run the tensor-core kernel (attention_prefill.hpp, bf16
  // inputs, fp32 accumulation), with fp32 weights the fp32 kernel too (exact against the CPU).
  // DeepSeek-V3's ops live in cuda_mla_ops.cpp: MLA decode tokens in the absorbed form (cuBLAS
  // strided-batched products with kv_b_proj's per-head W_UK / W_UV views around
  // kernels/mla_decode.hpp's split-KV kernel over the latent cache), prefill chunks expanded
  // (kernels/mla_prefill.hpp: R1's dims with bf16 on one tensor-core flash launch, else per
  // sequence in fp32), the interleaved rope and latent write (kernels/mla_latent.hpp), the MoE
  // combine (kernels/scatter_rows.hpp). Not in step graphs.
  static Result<std::unique_ptr<CudaBackend>> create(int device_index = 0, DType weight_dtype = DType::f32);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda; }
  void bind_thread() override;
  int device_index() const { return device_index_; }
  std::string name() const override { return "cuda"; }
  DType weight_dtype() const { return weight_dtype_; }
  DType matmul_input_dtype() const override { return weight_dtype_ == DType::bf16 ? DType::bf16 : DType::f32; }
  // bf16 with bf16 weights (half the bytes per decode step's K/V reads), fp32 with fp32 weights
  // (exact against the CPU). Every cache op dispatches on the cache tensor's dtype.
  DType kv_cache_dtype() const override {
    if (fp8_kv_cache_) return DType::f8_e4m3;
    return weight_dtype_ == DType::bf16 ? DType::bf16 : DType::f32;
  }
  // --kv-cache-dtype fp8: the KV write kernels store e4m3 (kv_write.hpp, qkv_rope.hpp) and the
  // split-KV, tensor-core prefill and fallback attention kernels read it.
  Status set_fp8_kv_cache(bool on) override {
    fp8_kv_cache_ = on;
    return Status::success();
  }

  Tensor empty(DType dtype, std::vector<int64_t> shape) override;
  Result<Tensor> upload_weight(const Tensor& host) override;
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override;
  AttentionMetadata upload_metadata(AttentionMetadata host) override;
  Tensor to_host(const Tensor& t) override;
  // The NCCL stage hand-off (cuda_stage_link.cpp): the stream synchronized, the GPU's PCI bus id,
  // and NCCL link ops on this backend's GPU.
  void synchronize() override;
  std::string device_id() const override;
  Result<std::unique_ptr<NcclLinkOps>> make_stage_link_ops() override;

  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) override;
  void rmsnorm_linear(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                      Tensor out) override;
  // FP8 block weights back to back (weight_b's rows and scale rows right after weight_a's, weight_a
  // whole 128-row blocks) at decode sizes the f16 kernel takes: one launch for both
  // (kernels/fp8_gemv_f16.hpp's split launch). Otherwise two linear calls.
  void linear_pair(const Tensor& x, const Tensor& weight_a, const Tensor& weight_b, Tensor out_a,
                   Tensor out_b) override;
  // FP8 block-scaled linear (cuda_fp8_ops.cpp): up to kFp8GemvMaxTokens tokens the decode kernel
  // (bf16 x, weights streamed once), more (from kFp8LtMinTokens where cuBLASLt takes the shape:
  // kernels/fp8_block_gemm.hpp's fp8_linear_quantizes_x): x quantized per token and 128 channels,
  // then the e4m3 tensor-core GEMM. upload_fp8_weight keeps the bytes as they are.
  void linear_fp8_block(const Tensor& x, const Tensor& weight_fp8, const Tensor& scale_inv, Tensor out) override;
  Result<Tensor> upload_fp8_weight(const Tensor& host_fp8) override;
  // With bf16 weights, FP8 block weights (Tensor::block_scale) stay FP8 in HBM with their scales
  // and linear runs linear_fp8_block on them; with fp32 weights (exact against the CPU) they are
  // dequantized at upload, as the CPU backend holds them.
  bool keeps_fp8_weights() const override { return weight_dtype_ == DType::bf16; }
  // kernels::kFp8DecodeSmemCarveout for every dependent kernel when on, the driver's choice when off.
  void prefer_fp8_decode(bool on) override;
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) override;
  void write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) override;
  void qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                         const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                         const QkNorm& qk_norm) override;
  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionMetadata& meta,
                       float scale, Tensor out) override;
  bool supports_mla_moe() const override { return true; }
  void rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) override;
  void mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                        const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) override;
  void mla_rope_and_write_latent(Tensor q, const Tensor& kv_a, const Tensor& norm_weight, float eps,
                                 const Tensor& positions, const Tensor& inv_freq, float scale,
                                 const Tensor& slot_mapping, Tensor cache) override;
  void mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                           const AttentionMetadata& meta, float scale, Tensor out) override;
  void add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& weights,
                       Tensor out) override;
  void silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void silu_and_mul_packed(const Tensor& gate_up, Tensor out) override;
  // bf16 weights, no gate/up bias, more than kGemvMaxTokens tokens: the gate/up product and the
  // activation in bf16 (half the bytes of the default's fp32), then the down GEMM. Otherwise the
  // default.
  void mlp(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias, const Tensor& down_weight,
           const Tensor& down_bias, Tensor out) override;
  void copy(const Tensor& src, Tensor dst) override;
  void add(const Tensor& a, const Tensor& b, Tensor out) override;
  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) override;
  std::vector<int32_t> argmax(const Tensor& logits) override;
  // kernels/sampling.hpp on logits already on this GPU (fp32 [rows.size(), vocab]), after each
  // masked row's kernels/token_mask (structured outputs); false otherwise, and for a row with a
  // NaN or no finite maximum (the host sampler then reports it).
  bool sample_on_device(const Tensor& logits, const std::vector<DeviceSampleRow>& rows,
                        std::vector<int32_t>* ids) override;
  // kernels/moe_routing.hpp (cuda_moe_ops.cpp): fp32 logits, E <= 512, n_group <= 32, top_k <= 32;
  // false otherwise.
  bool moe_route(const Tensor& logits, const Tensor& bias, const MoeRouteParams& params, Tensor topk_ids,
                 Tensor topk_weights) override;

  // Grouped FP8 experts (cuda_moe_ops.cpp): pack_moe_experts keeps device arrays of the experts'
  // weight and scale pointers; moe_experts takes batches of up to kMoeExpertsMaxTokens tokens with no
  // host sync (step graphs): up to kMoeF16MaxTokens on kernels/moe_f16_gemv.hpp where it takes the
  // sizes, else on the grouped GEMVs (kernels/moe_grouped_gemv.hpp); larger ones on
  // moe_experts_prefill (cuda_moe_prefill.cpp: one FP8 GEMM per active expert over the
  // expert-sorted rows; one host sync for the experts' row counts; false while a graph records).
  static constexpr int64_t kMoeExpertsMaxTokens = 512;
  static constexpr int64_t kMoeF16MaxTokens = 64;
  // Which kernels moe_experts runs the experts' products on for n decode tokens of these sizes,
  // in words (cuda_moe_ops.cpp's choice, its switches read now): what the benchmarks' notes name.
  static const char* moe_decode_experts_path(int64_t n, int64_t hidden, int64_t inter);
  Result<MoeExperts> pack_moe_experts(const std::vector<Tensor>& gate_up, const std::vector<Tensor>& down,
                                      const Tensor& shared_gate_up, const Tensor& shared_down) override;
  bool moe_experts(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights, const MoeExperts& experts,
                   int64_t expert_begin, int64_t num_experts, Tensor out) override;
  // The packed shared expert of up to kFp8GemvF16MaxTokens tokens on a second stream, beside the
  // router and the routing (cuda_moe_shared_ahead.cpp says why and how); behind
  // TROUPE_MOE_SHARED_AHEAD=1, read at each call, until the H200 has timed it.
  bool moe_shared_ahead(const Tensor& x, const MoeExperts& experts, Tensor out) override;
  void moe_shared_join() override;
  int64_t shared_ahead_starts() const { return shared_ahead_starts_; }  // moe_shared_ahead's trues
  // Part of the weight read into L2 on a second stream while a step graph records, joined at the
  // recording's end (cuda_weight_prefetch.cpp); behind TROUPE_L2_PREFETCH=1 until timed.
  void prefetch_weight(const Tensor& weight) override;
  int64_t prefetches_recorded() const { return prefetches_recorded_; }  // prefetch_weight's launches

  bool supports_graphs() const override { return true; }
  Result<GraphPhase> begin_graph(int64_t key) override;
  Status end_graph(bool launch) override;
  void drop_graphs() override { graphs_.clear(); }
  int64_t num_step_graphs() const { return graphs_.num_graphs(); }
  CUstream_st* stream() const { return stream_; }

  // The first CUDA or cuBLAS error since the last call, then cleared ("" when none).
  std::string take_error();
  // The first error ever (take_error does not clear it): a failed op, launch or cudaMalloc. A
  // failed device allocation records it here, then throws std::bad_alloc out of the op (ops return
  // nothing); the engine's loop catches it. upload_weight and create_kv_cache return it instead.
  Status status() const override;
  bool memory_info(size_t* free_bytes, size_t* total_bytes) const override;
  bool memory_held(size_t* peak, size_t* slack) const override;
  void reset_memory_peak() override;

 private:
  CudaBackend() = default;
  Tensor on_device(const Tensor& t);  // t itself when already on the GPU, else an uploaded copy
  Tensor scratch(DType dtype, std::vector<int64_t> shape);  // an op's own temporary
  // The rows' token masks into the logits (-inf where not allowed); false: a mask too short.
  bool apply_token_masks(const Tensor& logits, const std::vector<DeviceSampleRow>& rows);
  Tensor device_tensor(DType dtype, std::vector<int64_t> shape);  // stream-ordered from the pool
  bool in_graph() const { return graphs_.mode() != StepGraphs::Mode::eager; }
  bool replaying() const { return graphs_.replaying(); }
  void check(int status, const char* what);
  void record_fault(const std::string& what);  // sets error_ and fault_ when empty
  Result<Tensor> upload_weight_or_throw(const Tensor& host);
  Result<Tensor> upload_block_fp8_weight(const Tensor& host);  // a host weight with its block scale
  void linear_fp8_weight(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out);
  // x [n, in] (device, bf16 or fp32) quantized per token and 128 channels (kernels/fp8_quant.hpp).
  struct Fp8Rows {
    Tensor x;      // [n, in] e4m3
    Tensor scale;  // [ceil(in / 128), n]
  };
  Fp8Rows quantize_fp8_rows(const Tensor& dx, int64_t n, int64_t in);
  // out [n, out_features] (fp32) = the quantized rows times an FP8 block weight: cuBLASLt, else the
  // grouped wgmma GEMM, else the own kernel. False, with nothing done, where cuBLASLt refused the
  // size and gemv_if_refused (the caller's decode GEMV reads x as it is).
  bool fp8_block_from_quantized(const Fp8Rows& q, int64_t n, const Tensor& weight_fp8, const Tensor& scale_inv,
                                Tensor out, bool gemv_if_refused);
  // out[m, n] (bf16) = x_fp8 [m, k] (scales [ceil(k/128), m], fp8_quant's) times the FP8 block
  // weight w [n, k] (scales w_scale [ceil(n/128), ceil(k/128)]): cuBLASLt's block-scaled GEMM where
  // it takes the shape, else the own kernel.
  void fp8_block_product_bf16(const uint8_t* x_fp8, const float* x_scale, const uint8_t* w, const float* w_scale,
                              uint16_t* out, int64_t m, int64_t n, int64_t k);
  // The same on any thread: with a cuBLASLt handle, a stream and a workspace; a cudaError_t.
  static int launch_fp8_product_bf16(void* lt_handle, const uint8_t* x_fp8, const float* x_scale, const uint8_t* w,
                                     const float* w_scale, uint16_t* out, int64_t m, int64_t n, int64_t k,
                                     CUstream_st* on, void* workspace, size_t workspace_bytes);
  // mlp for prefill-sized steps with FP8 block weights of cuBLASLt's shapes (cuda_fp8_ops.cpp):
  // x quantized, gate_up in bf16, silu * up quantized in one pass (kernels/moe_segment_quant, one
  // segment), down in bf16, widened into out. False (nothing done) for other steps and weights.
  bool mlp_fp8_block(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias,
                     const Tensor& down_weight, const Tensor& down_bias, Tensor out);
  // moe_experts for more than kMoeExpertsMaxTokens tokens (cuda_moe_prefill.cpp).
  bool moe_experts_prefill(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                           const MoeExperts& experts, int64_t expert_begin, Tensor out);
  void check_cublas(int status);  // a cublasStatus_t
  // linear with x already bf16 on the device: GEMV (n <= kGemvMaxTokens) or cuBLAS, no conversion.
  void linear_bf16_x(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out);
  // The step's prefill tiles of `tokens_per_tile` tokens and its decode tokens, uploaded into plan_.
  void build_attention_plan(int64_t tokens_per_tile);
  // Split-KV attention for `num_tokens` tokens (indices in `tokens` on the device, or all
  // tokens when nullptr) whose contexts are at most max_context long: on tensor cores for a bf16
  // cache of a shape attention_decode_mma takes, else the fp32 CUDA-core kernels.
  // per_token_partitions: each token's own context is split into the partitions (the kernel reads
  // it on the device), so the launch does not depend on the step's contexts (step graphs).
  void decode_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionMetadata& meta,
                        float scale, const int32_t* tokens, int64_t num_tokens, int64_t max_context, Tensor out,
                        bool per_token_partitions = false);

  // MLA (cuda_mla_ops.cpp). decode_tokens: the tokens of sequences with one new token (host).
  // per_token_partitions: each token's context split evenly into partitions (none shorter than the
  // kernel's minimum) counted from the block tables' width (a launch that does not depend on the
  // contexts: step graphs), else from the longest context.
  void mla_decode_absorbed(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                           const AttentionMetadata& meta, float scale, const std::vector<int32_t>& decode_tokens,
                           Tensor out, bool per_token_partitions);
  // The new tokens of sequences `seqs` (more than one new token each), expanded: the tensor-core
  // flash kernel over all of them (R1's dims, bf16 weights and cache), else the SIMT one per sequence.
  void mla_prefill_expanded(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                            const AttentionMetadata& meta, float scale, const std::vector<int32_t>& seqs, Tensor out);
  void mla_prefill_tensor_cores(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                const AttentionMetadata& meta, float scale, const std::vector<int32_t>& seqs,
                                Tensor out);
  void mla_prefill_simt(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight, const AttentionMetadata& meta,
                        float scale, int64_t s, Tensor out);
  // q_abs [n, H, kv_lora + rope] = [q_nope @ W_UK | q_pe]; out [n, H, v] = o_lat [n, H, kv_lora] @ W_UV^T.
  void mla_absorb_q(const Tensor& q, const Tensor& kv_b_weight, Tensor q_abs);
  void mla_unabsorb_out(const Tensor& o_lat, const Tensor& kv_b_weight, int64_t nope, Tensor out);

  void* cublas_ = nullptr;  // cublasHandle_t
  static constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;  // shared by cuBLAS and cuBLASLt calls
  void* cublas_workspace_ = nullptr;  // set once, so cuBLAS allocates nothing while a graph records
  CUstream_st* stream_ = nullptr;
  // moe_shared_ahead's stream (blocking, as stream_), the event it waits for and the one it
  // records when done, made with the first layer packed with its shared expert; whether its work
  // still awaits a join (moe_experts' combine, moe_shared_join, or end_graph).
  CUstream_st* side_stream_ = nullptr;
  CUevent_st* side_fork_ = nullptr;
  CUevent_st* side_done_ = nullptr;
  bool shared_ahead_pending_ = false;
  bool side_hold_ = false;  // graphs_.hold_releases() is open for it
  int64_t shared_ahead_starts_ = 0;
  // A blocking stream with the event it waits for (fork) and the one it records when done (join),
  // all or none made; a cudaError_t. moe_shared_ahead's and prefetch_weight's.
  static int make_forked_stream(CUstream_st** stream, CUevent_st** fork, CUevent_st** done);
  int ensure_side_stream();     // a cudaError_t
  void join_side_stream();      // stream_ waits for side_done_; the arena's held releases go
  // prefetch_weight's stream (made with the backend; null if that failed: no prefetches), its fork
  // and join events, whether a recording holds prefetches not yet joined, the device's L2 bytes.
  CUstream_st* prefetch_stream_ = nullptr;
  CUevent_st* prefetch_fork_ = nullptr;
  CUevent_st* prefetch_done_ = nullptr;
  bool prefetch_pending_ = false;
  int64_t prefetches_recorded_ = 0;
  size_t l2_bytes_ = 0;
  void join_prefetches();  // stream_ waits for the prefetch stream's work (end_graph)
  ExpertStreams expert_streams_;  // a prefill's MoE expert GEMMs: side streams and the threads that fill them
  StepGraphs graphs_;
  PinnedUpload pinned_upload_;  // weights go up through its pinned buffers
  int device_index_ = 0;
  DType weight_dtype_ = DType::f32;
  Tensor seq_of_token_;     // [num_tokens] i32 of the current step's metadata
  int num_sms_ = 1;
  bool fp8_kv_cache_ = false;          // --kv-cache-dtype fp8
  bool tensor_core_attention_ = false;  // prefill attention on bf16 tensor cores (bf16 weights)
  // The current step's attention work, from upload_metadata's host arrays.
  std::vector<int32_t> query_start_host_, context_lens_host_;
  int64_t plan_tokens_per_tile_ = 0;  // the tile size plan_ was built for; 0: none yet this step
  Tensor plan_;             // device i32: prefill tiles [plan_tiles_, 3], then decode token indices
  int64_t plan_tiles_ = 0, plan_decode_tokens_ = 0, plan_decode_context_ = 0;
  std::string error_;
  std::string fault_;  // sticky: status()
};

}  // namespace troupe::cuda

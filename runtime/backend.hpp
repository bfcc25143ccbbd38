#pragma once
// The ops a decoder layer needs, implemented per device (CpuBackend here; a CUDA backend later).
// Tensors are passed as handles: outputs are preallocated by the caller (Backend::empty) and
// written in place. Shapes are checked by the model at load time and by build_attention_metadata
// per step, so ops assume consistent shapes. Float tensors are fp32, except those the model
// allocates with matmul_input_dtype() (inputs of products only); index tensors are i32.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/attention_metadata.hpp"
#include "runtime/device_sampling.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/moe_route_params.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class NcclLinkOps;  // runtime/nccl_stage_link.hpp

// What the ops of a forward do between Backend::begin_graph and end_graph.
enum class GraphPhase {
  capture,  // run for real and recorded; end_graph instantiates the recording and launches it
  replay,   // nothing runs: the host inputs are staged where the recording reads them, and
            // end_graph launches the recording
};

// Qwen3's RMSNorm of each q and k head before rope (Backend::qkv_rope_write_kv): a head x becomes
// x / sqrt(mean over head_dim of x^2 + eps) * weight. Weights [head_dim] fp32 on the backend; an
// undefined one leaves those heads unnormed (Llama, Qwen2: both undefined).
struct QkNorm {
  Tensor q_weight;
  Tensor k_weight;
  float eps = 0.0f;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // Makes the calling thread compute on this backend's device (a tensor-parallel rank's thread).
  virtual void bind_thread() {}
  virtual std::string name() const = 0;
  // The device's health: the first fault (a failed op, launch or allocation), naming the op and
  // the device's error ("rmsnorm failed: an illegal memory access was encountered"). Sticky: once
  // set it stays, since results after a fault are garbage. The engine reads it after every
  // forward and sampling step and fails for good when it is set. Host-only backends never fault.
  virtual Status status() const { return Status::success(); }

  // Memory.
  virtual Tensor empty(DType dtype, std::vector<int64_t> shape) = 0;
  // A host tensor (any float dtype) as a weight on this device, converted to the compute dtype.
  virtual Result<Tensor> upload_weight(const Tensor& host) = 0;
  // Whether upload_weight keeps an F8_E4M3 weight carrying its block scale (Tensor::block_scale)
  // as FP8 on the device, for linear to run block-scaled products on it. False (every backend by
  // default): the loader hands such weights over dequantized to fp32.
  virtual bool keeps_fp8_weights() const { return false; }
  // A model whose linear layers run on FP8 weights kept as such (keeps_fp8_weights) says so
  // at load; the backend may arrange its decode kernels for it (CUDA: one shared-memory carveout
  // for every kernel of the step, kernels/smem_carveout.hpp). Process-wide; no-op by default.
  virtual void prefer_fp8_decode(bool on) { (void)on; }
  virtual Result<KvCache> create_kv_cache(const KvCacheSpec& spec) = 0;
  // Metadata built on the host, moved where the ops read it (CPU: as is).
  virtual AttentionMetadata upload_metadata(AttentionMetadata host) { return host; }
  virtual Tensor to_host(const Tensor& t) = 0;
  // Free and total bytes of device memory; false for host memory (the CPU backend).
  virtual bool memory_info(size_t* free_bytes, size_t* total_bytes) const {
    (void)free_bytes;
    (void)total_bytes;
    return false;
  }
  // Device bytes this backend has held at its peak since reset_memory_peak() (tensors, workspaces,
  // an estimate of its context) into `peak`, and bytes it keeps reserved but does not use (free to
  // reuse by itself alone) into `slack`; false where unknown (then the device's whole use counts).
  // KV sizing budgets against it, so processes sharing one GPU each stay within their own
  // --gpu-memory-utilization, and a stage restarted in the same process is not charged for the
  // cache of its previous epoch.
  virtual bool memory_held(size_t* peak, size_t* slack) const {
    (void)peak;
    (void)slack;
    return false;
  }
  virtual void reset_memory_peak() {}

  // The dtype of tensors whose only consumers are linear, lm_head and gather_rows: the normed
  // hidden states and the MLP activation. rmsnorm, add_rmsnorm and silu_and_mul_packed write
  // their `out` in it, gather_rows copies it, linear and lm_head read it as x; every other tensor
  // stays fp32. A backend whose products take bf16 inputs returns bf16, so its producers round
  // once instead of every product converting x again. fp32 here (and on every backend by default).
  virtual DType matmul_input_dtype() const { return DType::f32; }
  // The element type of the KV cache this backend allocates and its attention ops read (the
  // models' kv_cache_spec asks here, so KV sizing counts its bytes). The cache ops' inputs and
  // outputs other than the cache stay fp32. A backend with bf16 weights keeps a bf16 cache
  // (written rounded to nearest even); fp32 here (and on every backend by default).
  virtual DType kv_cache_dtype() const { return DType::f32; }
  // --kv-cache-dtype fp8: `on` makes kv_cache_dtype() f8_e4m3 (per-tensor scaled, as
  // runtime/kv_cache.hpp says): write_kv and qkv_rope_write_kv store e4m3(x / scale), paged_attention
  // reads e4m3 * scale, the scale being the cache tensor's tensor_scale. unsupported (nothing
  // changes) on a backend whose cache ops cannot; the CPU and CUDA backends can (dense attention
  // only: MLA refuses an f8_e4m3 cache at load).
  virtual Status set_fp8_kv_cache(bool on) {
    if (!on) return Status::success();
    return make_error(ErrorCode::unsupported, name() + " backend has no fp8 KV cache (--kv-cache-dtype fp8)");
  }

  // out[t, :] = table[ids[t], :]. ids: [n] i32; table: [vocab, hidden]; out: [n, hidden].
  virtual void embedding(const Tensor& ids, const Tensor& table, Tensor out) = 0;
  // out = x / sqrt(mean(x^2) + eps) * weight, per row. x, out: [n, hidden]; out may alias x
  // (fp32 out) or be matmul_input_dtype(). x, residual, weight: fp32.
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) = 0;
  // Fused residual add: residual += x, then out = rmsnorm(residual). residual, x, out: [n, hidden];
  // out fp32 or matmul_input_dtype() (then it does not alias residual).
  virtual void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) = 0;
  // out = x @ weight^T (+ bias). x: [n, in]; weight: [out_features, in]; bias: [out_features] or
  // undefined; out: [n, out_features] fp32. x fp32 or matmul_input_dtype().
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) = 0;
  // out = linear(rmsnorm(x, norm_weight, eps), weight), no bias: a norm whose output only this
  // product reads (MLA's q_a_layernorm before q_b), which a backend may fuse into the product (CUDA:
  // FP8 decode GEMVs). x: [n, in] fp32; the default rounds the normed x to matmul_input_dtype().
  virtual void rmsnorm_linear(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                              Tensor out) {
    Tensor normed = empty(matmul_input_dtype(), x.shape());
    rmsnorm(x, norm_weight, eps, normed);
    linear(normed, weight, Tensor(), out);
  }
  // FP8 block-scaled linear (DeepSeek-V3/R1 checkpoints, runtime/fp8_block.hpp): out = x @ W^T with
  // W[r, c] = weight_fp8[r, c] * scale_inv[r / 128, c / 128] (128 x 128 blocks, edge blocks partial).
  // x: [n, in] fp32 or matmul_input_dtype(); weight_fp8: [out, in] f8_e4m3 and scale_inv:
  // [ceil(out / 128), ceil(in / 128)] f32, both from upload_fp8_weight; out: [n, out] fp32. The
  // default (runtime/backend_fp8.cpp) dequantizes W on the host and runs linear: slow, for
  // backends without FP8 kernels.
  virtual void linear_fp8_block(const Tensor& x, const Tensor& weight_fp8, const Tensor& scale_inv, Tensor out);
  // A host F8_E4M3 weight (its bytes kept as they are) or its F32 scale_inv (kept fp32) on this
  // device, for linear_fp8_block. The default keeps host tensors on host backends.
  virtual Result<Tensor> upload_fp8_weight(const Tensor& host_fp8);
  // Rotary embedding in place, neox style (rotate_half: pairs (i, i + rotary_dim/2)) on the first
  // rotary_dim = 2 * inv_freq.size dims of each head. q: [n, num_heads, head_dim];
  // k: [n, num_kv_heads, head_dim]; positions: [n] i32; inv_freq: [rotary_dim / 2] fp32.
  virtual void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) = 0;
  // cache_component[slot_mapping[t]] = x[t] for each token. x: [n, num_heads, head_dim] matching the
  // component's [num_blocks, block_size, num_heads, head_dim]. An f8_e4m3 component stores
  // e4m3(x / cache_component.tensor_scale()), saturated to +-448.
  virtual void write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) = 0;
  // After the fused q/k/v projection: q_out = rope(q_norm(q)), k_cache[slot_mapping[t]] =
  // rope(k_norm(k_t)), v_cache[slot_mapping[t]] = v_t; norms, rope and the writes exactly as
  // rmsnorm (per head: rows of head_dim), rope and write_kv do, a norm skipped where qk_norm's
  // weight is undefined. qkv: [n, (num_heads + 2 * num_kv_heads) * head_dim] (per row: q heads,
  // k heads, v heads, the fused weight's row order); q_out: [n, num_heads, head_dim]; k_cache,
  // v_cache: [num_blocks, block_size, num_kv_heads, head_dim]; positions, slot_mapping: [n] i32;
  // inv_freq: [rotary_dim / 2] fp32. The default splits qkv with gather_rows, then runs rmsnorm,
  // rope and write_kv; backends override it with one kernel.
  virtual void qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                 const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                                 const QkNorm& qk_norm) {
    const int64_t n = q_out.size(0), num_heads = q_out.size(1), num_kv_heads = k_cache.size(2);
    const int64_t head_dim = q_out.size(2);
    if (n == 0) return;
    Tensor k = empty(q_out.dtype(), {n, num_kv_heads, head_dim}), v = empty(q_out.dtype(), {n, num_kv_heads, head_dim});
    split_qkv(qkv, q_out, k, v);
    if (qk_norm.q_weight.defined()) {
      Tensor heads = q_out.reshape({n * num_heads, head_dim});
      rmsnorm(heads, qk_norm.q_weight, qk_norm.eps, heads);
    }
    if (qk_norm.k_weight.defined()) {
      Tensor heads = k.reshape({n * num_kv_heads, head_dim});
      rmsnorm(heads, qk_norm.k_weight, qk_norm.eps, heads);
    }
    rope(q_out, k, positions, inv_freq);
    write_kv(k_cache, k, slot_mapping);
    write_kv(v_cache, v, slot_mapping);
  }
  // Splits the fused product's rows into dense heads with gather_rows. qkv: [n, (num_heads + 2 *
  // num_kv_heads) * head_dim] (per row: q heads, k heads, v heads); q_out: [n, num_heads, head_dim];
  // k, v: [n, num_kv_heads, head_dim].
  void split_qkv(const Tensor& qkv, Tensor q_out, Tensor k, Tensor v) {
    const int64_t n = q_out.size(0), num_heads = q_out.size(1), head_dim = q_out.size(2);
    const int64_t num_kv_heads = k.size(1), per_token = num_heads + 2 * num_kv_heads;
    std::vector<int32_t> q_rows, k_rows, v_rows;  // rows of qkv seen as [n * per_token, head_dim]
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < per_token; ++h) {
        auto& rows = h < num_heads ? q_rows : h < num_heads + num_kv_heads ? k_rows : v_rows;
        rows.push_back(int32_t(t * per_token + h));
      }
    }
    const Tensor heads = qkv.reshape({n * per_token, head_dim});
    gather_rows(heads, q_rows, q_out.reshape({n * num_heads, head_dim}));
    gather_rows(heads, k_rows, k.reshape({n * num_kv_heads, head_dim}));
    gather_rows(heads, v_rows, v.reshape({n * num_kv_heads, head_dim}));
  }
  // Causal paged attention over a batch: query token t of sequence s at position p attends to the
  // sequence's cached tokens [0, p] (its new K/V must already be written). GQA: query head h reads
  // kv head h / (num_heads / num_kv_heads). q, out: [n, num_heads, head_dim]; k_cache, v_cache:
  // [num_blocks, block_size, num_kv_heads, head_dim]; f8_e4m3 caches are read as e4m3 * their
  // tensor_scale().
  virtual void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                               const AttentionMetadata& meta, float scale, Tensor out) = 0;
  // out = silu(gate) * up. gate, up, out: [n, intermediate].
  virtual void silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // The same over a fused gate/up projection: out[t, i] = silu(gate_up[t, i]) * gate_up[t, I + i].
  // gate_up: [n, 2 * I] fp32 (gate columns first); out: [n, I] fp32 or matmul_input_dtype(). The
  // default runs silu_and_mul per row on views (fp32 only); backends override it with one kernel.
  virtual void silu_and_mul_packed(const Tensor& gate_up, Tensor out) {
    const int64_t n = out.size(0), inter = out.size(-1);
    for (int64_t t = 0; t < n; ++t) {
      const Tensor row = gate_up.rows(t, 1).reshape({2 * inter});
      silu_and_mul(row.rows(0, inter), row.rows(inter, inter), out.rows(t, 1).reshape({inter}));
    }
  }
  // The gated MLP: out = (silu(g) * u) @ down_weight^T (+ down_bias), where [g | u] = x @
  // gate_up_weight^T (+ gate_up_bias). x: [n, hidden] (fp32 or matmul_input_dtype());
  // gate_up_weight: [2 * I, hidden] (gate rows first); down_weight: [hidden, I]; out: [n, hidden]
  // fp32. The default runs linear, silu_and_mul_packed and linear with the gate/up product in fp32
  // and the activation in matmul_input_dtype(); a backend may pick other intermediate dtypes or
  // fuse the steps.
  // Two linear layers of one input, no biases: out_a = x @ weight_a^T, out_b = x @ weight_b^T (each
  // as linear). A backend may run them as one product where weight_b's rows follow weight_a's in
  // one buffer (DeepSeek's q_a and kv_a, loaded that way): the default runs linear twice.
  virtual void linear_pair(const Tensor& x, const Tensor& weight_a, const Tensor& weight_b, Tensor out_a,
                           Tensor out_b) {
    linear(x, weight_a, Tensor(), out_a);
    linear(x, weight_b, Tensor(), out_b);
  }
  // A hint: `weight` is read soon, after work queued since the last op that reads little memory
  // (a decode step's attention). A backend may start moving it toward the compute beside that work;
  // nothing is computed or changed, and ignoring the hint (the default) is always correct.
  virtual void prefetch_weight(const Tensor& weight) { (void)weight; }
  static constexpr int64_t kPrefetchMaxTokens = 8;  // decode batches whose attention and routing stream little
  virtual void mlp(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias, const Tensor& down_weight,
                   const Tensor& down_bias, Tensor out) {
    const int64_t n = out.size(0), inter = down_weight.size(1);
    Tensor gate_up = empty(DType::f32, {n, 2 * inter});
    linear(x, gate_up_weight, gate_up_bias, gate_up);
    Tensor act = empty(matmul_input_dtype(), {n, inter});  // read by the down projection only
    silu_and_mul_packed(gate_up, act);
    linear(act, down_weight, down_bias, out);
  }
  // DeepSeek-V3's ops (MLA with a latent cache, MoE combine). The CPU and CUDA backends have them;
  // a model needing them refuses to load where supports_mla_moe() is false, and the defaults do nothing.
  virtual bool supports_mla_moe() const { return false; }
  // Interleaved rotary embedding in place (transformers' apply_rotary_pos_emb_interleave) on the
  // last rotary_dim = 2 * inv_freq.size dims of each head: with r = those dims, half = rotary_dim / 2,
  // c_i = cos(pos * inv_freq[i]) * scale, s_i = sin(...) * scale, it writes
  //   r'[i] = r[2i] * c_i - r[2i+1] * s_i,  r'[half + i] = r[2i+1] * c_i + r[2i] * s_i
  // (de-interleaved then rotate_half; the result stays de-interleaved, as transformers leaves it).
  // x: [n, num_heads, head_dim] fp32; positions: [n] i32; inv_freq: [rotary_dim / 2] fp32.
  virtual void rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) {
    (void)x, (void)positions, (void)inv_freq, (void)scale;
  }
  // MLA's cache write: per token t, kv_a[t] = [latent (kv_lora) | k_pe (rotary_dim)]; writes
  // cache[slot_mapping[t]] = [rmsnorm(latent) * norm_weight | rope_interleaved(k_pe)] (formulas as
  // rmsnorm and rope_interleaved). kv_a: [n, kv_lora + rotary_dim] fp32; norm_weight: [kv_lora];
  // cache: [num_blocks, block_size, 1, kv_lora + rotary_dim].
  virtual void mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                                const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) {
    (void)kv_a, (void)norm_weight, (void)eps, (void)positions, (void)inv_freq, (void)scale, (void)slot_mapping,
        (void)cache;
  }
  // rope_interleaved(q, positions, inv_freq, scale), then mla_write_latent(kv_a, ...) with the same
  // positions, inv_freq and scale: an MLA layer's two position-dependent steps, which a backend may
  // run as one (CUDA: one launch).
  virtual void mla_rope_and_write_latent(Tensor q, const Tensor& kv_a, const Tensor& norm_weight, float eps,
                                         const Tensor& positions, const Tensor& inv_freq, float scale,
                                         const Tensor& slot_mapping, Tensor cache) {
    rope_interleaved(q, positions, inv_freq, scale);
    mla_write_latent(kv_a, norm_weight, eps, positions, inv_freq, scale, slot_mapping, cache);
  }
  // Causal paged MLA attention over the latent cache (see mla_write_latent). Per head h, a cached
  // token j expands to k_j = [W_k_h @ latent_j | k_pe_j] and v_j = W_v_h @ latent_j, where
  // kv_b_weight's rows are per head [k_nope rows (qk_nope) | v rows (v_dim)]; then as paged_attention.
  // Backends may compute it absorbed (the same sums reordered; kernels/mla_decode.hpp), as the CPU
  // and CUDA ones do for sequences with one new token.
  // q: [n, num_heads, qk_nope + rotary_dim] (rope part last, already roped); kv_b_weight:
  // [num_heads * (qk_nope + v_dim), kv_lora] (fp32, or bf16 where the backend keeps bf16
  // matrices); cache fp32 or kv_cache_dtype(); out: [n, num_heads, v_dim].
  virtual void mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                   const AttentionMetadata& meta, float scale, Tensor out) {
    (void)q, (void)cache, (void)kv_b_weight, (void)meta, (void)scale, (void)out;
  }
  // MoE combine: out[rows[i], :] += weights[i] * x[i, :]. x: [rows.size(), d] fp32; out: [n, d] fp32.
  virtual void add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& weights,
                               Tensor out) {
    (void)x, (void)rows, (void)weights, (void)out;
  }
  // DeepSeek-V3's MoE router (noaux_tc), the choice models/moe.cpp route_tokens makes: per token
  // the params.top_k experts and their weights. logits: [n, E] fp32; bias: [E] fp32 (host or
  // device); topk_ids: [n, top_k] i32; topk_weights: [n, top_k] fp32, both from empty(). False when
  // this backend (or these settings) has no kernel for it: nothing is written and the caller routes
  // on the host. The CPU backend returns false (its host route is the reference).
  virtual bool moe_route(const Tensor& logits, const Tensor& bias, const MoeRouteParams& params, Tensor topk_ids,
                         Tensor topk_weights) {
    (void)logits, (void)bias, (void)params, (void)topk_ids, (void)topk_weights;
    return false;
  }
  // dst = src (same shape and dtype).
  virtual void copy(const Tensor& src, Tensor dst) = 0;
  // out = a + b, elementwise, same shapes; out may alias a or b.
  virtual void add(const Tensor& a, const Tensor& b, Tensor out) = 0;
  // out[i, :] = x[rows[i], :]. x: [n, d]; out: [rows.size(), d], both of the same dtype (fp32 or
  // matmul_input_dtype()).
  virtual void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) = 0;
  // logits = hidden @ weight^T. hidden: [n, hidden]; weight: [vocab, hidden]; logits: [n, vocab] fp32.
  virtual void lm_head(const Tensor& hidden, const Tensor& weight, Tensor logits) { linear(hidden, weight, Tensor(), logits); }
  // Per row, the index of the largest value (the first on ties). logits: [n, vocab].
  virtual std::vector<int32_t> argmax(const Tensor& logits) = 0;
  // Samples one token per row on the device, so the logits stay there: ids[r] is the token
  // Sampler::sample_row picks for rows[r] (temperature, top-k, top-p, min-p, rows[r].uniform),
  // after the row's token mask (rows[r].allowed: the masked-out logits are set to -inf in place).
  // logits: [rows.size(), vocab] fp32. False when not supported (the caller samples on the host).
  virtual bool sample_on_device(const Tensor& logits, const std::vector<DeviceSampleRow>& rows,
                                std::vector<int32_t>* ids) {
    (void)logits;
    (void)rows;
    (void)ids;
    return false;
  }

  // The pipeline's NCCL hand-off between stages (--stage-transport nccl, runtime/nccl_stage_link.hpp).
  // Waits until every op enqueued so far has finished (a GPU's stream); host backends compute at once.
  virtual void synchronize() {}
  // The physical device this backend computes on, unique on its machine ("" for host memory):
  // two stages on one device can not be ranks of one NCCL communicator.
  virtual std::string device_id() const { return ""; }
  // The NCCL calls of one link end on this backend's device (backend_stage_link.cpp: unsupported
  // unless the backend is a GPU's).
  virtual Result<std::unique_ptr<NcclLinkOps>> make_stage_link_ops();

  // Step graphs (CUDA graphs): the device work of one forward recorded once per `key` and replayed
  // with new inputs, so a decode step costs one launch. Between begin_graph and end_graph the
  // forward must make the same calls with the same shapes as the one recorded under that key, and
  // read no result on the host; tensors it allocates are valid until the next begin_graph.
  // end_graph(true) launches the recording; end_graph(false) (the forward failed) discards a
  // capture and launches nothing. Errors (the recording failed or the calls differed) leave the
  // backend eager and drop the key; the caller then runs the forward again without a graph.
  virtual bool supports_graphs() const { return false; }
  virtual Result<GraphPhase> begin_graph(int64_t key) {
    (void)key;
    return make_error(ErrorCode::unsupported, name() + " backend has no step graphs");
  }
  // Forgets every recording (they hold the addresses of the KV cache they were made with).
  virtual void drop_graphs() {}
  virtual Status end_graph(bool launch) {
    (void)launch;
    return make_error(ErrorCode::unsupported, name() + " backend has no step graphs");
  }
};

}  // namespace troupe

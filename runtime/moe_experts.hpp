#pragma once
// Grouped MoE experts: a capability a Backend may add beside the Backend interface (CudaBackend
// does), found with dynamic_cast by models/moe. The CPU backend has none, so the model's
// per-expert loop stays its path (and the reference).
//
//   load:     MoeExperts packed = pack_moe_experts(local experts, shared expert)   (once)
//   forward:  moe_route (device ids) -> moe_experts(x, ids, weights, packed, ...)   (no host sync)
//             false -> the ids come to the host and the loop runs (e.g. CUDA while a graph records
//             a prefill-sized batch: its prefill path reads the experts' row counts on the host)
//
// MoeExperts is opaque to the model: `table` is the backend's own device data (CUDA: arrays of the
// experts' weight and scale pointers, so the weights stay where the loader put them); `weights`
// keeps the experts' tensors alive as long as the table points into them.
#include <cstdint>
#include <vector>

#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

struct MoeExperts {
  Tensor table;                 // undefined: not packed
  std::vector<Tensor> weights;  // gate_up, then down, of every local expert (then the shared one's when has_shared)
  int64_t num_local = 0;        // experts in the table: the layer's local ones, in order
  int64_t hidden = 0, intermediate = 0;
  bool has_shared = false;      // the shared expert rides along: moe_experts writes out = shared + routed

  bool defined() const { return table.defined(); }
};

class MoeExpertsBackend {
 public:
  virtual ~MoeExpertsBackend() = default;
  // Packs a MoE layer's local experts: gate_up[e] [2 * I, hidden] and down[e] [hidden, I], FP8 block
  // weights with their scales as upload_weight left them. An error for weights it cannot group.
  // shared_gate_up / shared_down: the shared experts' (undefined when none); taken along
  // (has_shared) when they have the routed experts' shapes, else left to the caller.
  virtual Result<MoeExperts> pack_moe_experts(const std::vector<Tensor>& gate_up, const std::vector<Tensor>& down,
                                              const Tensor& shared_gate_up, const Tensor& shared_down) = 0;
  // The routed experts and their weighted combine: out[t, :] += sum_i topk_weights[t, i] *
  // expert_{topk_ids[t, i]}(x[t, :]) over the slots whose expert is local, [expert_begin,
  // expert_begin + experts.num_local) of num_experts (local expert e is the table's e - expert_begin).
  // x: [n, hidden] fp32 or the backend's matmul_input_dtype(); topk_ids [n, top_k] i32 and
  // topk_weights [n, top_k] fp32 from Backend::moe_route on this device; out: [n, hidden] fp32,
  // written as shared + routed when experts.has_shared, else holding the shared experts' result
  // (the routed sum is added). False, nothing written, for a batch it does not take.
  virtual bool moe_experts(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                           const MoeExperts& experts, int64_t expert_begin, int64_t num_experts, Tensor out) = 0;
  // Starts out = the packed shared expert of x (experts.has_shared) beside what follows, so its
  // weights stream while the router and the routing run: the next moe_experts call that returns
  // true leaves the shared expert out of its launches and adds the routed sum to out once it is
  // done; where none follows (a refusal, the host loop), moe_shared_join makes the backend's work
  // wait for it (out then holds the shared result; a no-op when nothing is pending). False,
  // nothing started, where the backend does not (the default; CUDA: decode batches behind its
  // switch).
  virtual bool moe_shared_ahead(const Tensor& x, const MoeExperts& experts, Tensor out) {
    (void)x, (void)experts, (void)out;
    return false;
  }
  virtual void moe_shared_join() {}
};

}  // namespace troupe

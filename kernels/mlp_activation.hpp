#pragma once
// The gated MLP's activation on bf16 intermediates (prefill-sized steps): out[t, i] =
// silu(gate_up[t, i]) * gate_up[t, inter + i], read and written in bf16, computed in fp32. The
// fp32-input versions (decode-sized steps) live in elementwise.hpp. Three layers: the __global__
// kernels (mlp_activation.cu), this raw-pointer launcher, and the CPU reference with the same
// formula (mlp_activation_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference, bf16 bits in and out: silu(g) * u = g / (1 + exp(-g)) * u in fp32 from the widened
// inputs, rounded to nearest even. gate_up: [n, 2 * inter]; out: [n, inter].
void silu_and_mul_packed_bf16_ref(const uint16_t* gate_up, uint16_t* out, int64_t n, int64_t inter);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, bf16 bits. gate_up: [n, 2 * inter]; out: [n, inter]. Rounds to nearest even.
// 16-byte accesses when inter % 8 == 0 and both pointers are 16-byte aligned, else one element a
// thread. Negative sizes give cudaErrorInvalidValue; n == 0 or inter == 0 does nothing.
cudaError_t launch_silu_and_mul_packed_bf16(const uint16_t* gate_up, uint16_t* out, int64_t n, int64_t inter,
                                            cudaStream_t stream);
#endif

}  // namespace troupe::kernels

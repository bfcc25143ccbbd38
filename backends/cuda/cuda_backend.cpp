#include "backends/cuda/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <cmath>

#include "runtime/dtype.hpp"

#include "kernels/argmax.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/gather_rows.hpp"
#include "kernels/gemv.hpp"
#include "kernels/kv_write.hpp"
#include "kernels/mlp_activation.hpp"
#include "kernels/qkv_rope.hpp"
#include "kernels/rmsnorm.hpp"
#include "kernels/rope.hpp"
#include "kernels/sampling.hpp"
#include "kernels/token_mask.hpp"
#include "runtime/logging.hpp"

namespace troupe::cuda {
using namespace kernels;  // the launchers this room wraps
namespace {

// Stream-ordered allocation on the default stream: the driver's memory pool caches freed blocks,
// so the many per-step temporaries neither synchronize nor go back to the driver.
void free_device(void* p) { free_pool_bytes(p); }

cublasHandle_t handle(void* p) { return static_cast<cublasHandle_t>(p); }

}  // namespace

Result<std::unique_ptr<CudaBackend>> CudaBackend::create(int device_index, DType weight_dtype) {
  if (weight_dtype != DType::f32 && weight_dtype != DType::bf16)
    return make_error(ErrorCode::unsupported, "the CUDA backend keeps weights in float32 or bfloat16");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    return make_error(ErrorCode::unavailable, "--device cuda: no usable CUDA device");
  if (device_index < 0 || device_index >= count)
    return make_error(ErrorCode::invalid_argument, "CUDA device " + std::to_string(device_index) + " does not exist (" +
                                                       std::to_string(count) + " present)");
  if (cudaError_t err = cudaSetDevice(device_index); err != cudaSuccess)
    return make_error(ErrorCode::unavailable, std::string("cudaSetDevice: ") + cudaGetErrorString(err));
  std::unique_ptr<CudaBackend> backend(new CudaBackend());
  backend->device_index_ = device_index;
  backend->weight_dtype_ = weight_dtype;
  backend->tensor_core_attention_ = weight_dtype == DType::bf16;
  if (cudaDeviceGetAttribute(&backend->num_sms_, cudaDevAttrMultiProcessorCount, device_index) != cudaSuccess)
    backend->num_sms_ = 1;
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return make_error(ErrorCode::unavailable, "cublasCreate failed");
  // fp32 weights: exact fp32 products, no TF32 (the CPU reference and the oracle are fp32).
  // bf16 weights: the default mode, which uses tensor cores for bf16 inputs.
  cublasSetMathMode(h, weight_dtype == DType::bf16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH);
  backend->cublas_ = h;
  cudaStream_t stream = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess) return make_error(ErrorCode::unavailable, "cudaStreamCreate failed");
  backend->stream_ = stream;
  cublasSetStream(h, stream);
  // prefetch_weight's stream and events; without them (or an L2 size) it does nothing.
  int l2_bytes = 0;
  if (cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device_index) == cudaSuccess && l2_bytes > 0 &&
      make_forked_stream(&backend->prefetch_stream_, &backend->prefetch_fork_, &backend->prefetch_done_) == cudaSuccess)
    backend->l2_bytes_ = size_t(l2_bytes);
  cudaGetLastError();
  if (cudaMalloc(&backend->cublas_workspace_, kCublasWorkspaceBytes) == cudaSuccess) {
    cublasSetWorkspace(h, backend->cublas_workspace_, kCublasWorkspaceBytes);
  } else {
    cudaGetLastError();
    backend->cublas_workspace_ = nullptr;
  }
  // Keep freed memory in the pool instead of returning it at every synchronization.
  cudaMemPool_t pool = nullptr;
  if (cudaDeviceGetDefaultMemPool(&pool, device_index) == cudaSuccess) {
    uint64_t threshold = UINT64_MAX;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
  }
  return backend;
}

int CudaBackend::make_forked_stream(CUstream_st** stream, CUevent_st** fork, CUevent_st** done) {
  cudaStream_t s = nullptr;
  cudaEvent_t f = nullptr, d = nullptr;
  cudaError_t err = cudaStreamCreate(&s);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&f, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&d, cudaEventDisableTiming);
  if (err != cudaSuccess) {
    if (d) cudaEventDestroy(d);
    if (f) cudaEventDestroy(f);
    if (s) cudaStreamDestroy(s);
    return err;
  }
  *stream = s;
  *fork = f;
  *done = d;
  return cudaSuccess;
}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (side_stream_) {
    cudaStreamSynchronize(side_stream_);
    cudaStreamDestroy(side_stream_);
  }
  if (prefetch_stream_) {
    cudaStreamSynchronize(prefetch_stream_);
    cudaStreamDestroy(prefetch_stream_);
  }
  if (prefetch_fork_) cudaEventDestroy(prefetch_fork_);
  if (prefetch_done_) cudaEventDestroy(prefetch_done_);
  if (side_fork_) cudaEventDestroy(side_fork_);
  if (side_done_) cudaEventDestroy(side_done_);
  if (cublas_) cublasDestroy(handle(cublas_));
  if (cublas_workspace_) cudaFree(cublas_workspace_);
  if (stream_) cudaStreamDestroy(stream_);
}

Result<GraphPhase> CudaBackend::begin_graph(int64_t key) {
  if (!error_.empty()) return make_error(ErrorCode::unavailable, "step graph: an earlier CUDA error is pending");
  return graphs_.begin(key, stream_);
}

Status CudaBackend::end_graph(bool launch) {
  join_side_stream();  // a capture ends joined (moe_shared_ahead's work left unjoined by a fault)
  join_prefetches();   // and prefetch_weight's, joined only here
  return graphs_.end(launch, stream_);
}

void CudaBackend::check(int status, const char* what) {
  if (status != 0 && in_graph()) {
    cudaGetLastError();
    graphs_.fail(std::string(what) + " failed: " + cudaGetErrorString(cudaError_t(status)));
    return;
  }
  if (status != 0) record_fault(std::string(what) + " failed: " + cudaGetErrorString(cudaError_t(status)));
}

void CudaBackend::record_fault(const std::string& what) {
  if (error_.empty()) {
    error_ = what;
    log::get("cuda")->error("{}", error_);
  }
  if (fault_.empty()) fault_ = what;
}

Status CudaBackend::status() const {
  if (fault_.empty()) return Status::success();
  return make_error(ErrorCode::internal, fault_);
}

void CudaBackend::check_cublas(int status) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const std::string what = "cuBLAS GEMM failed with status " + std::to_string(status);
  if (in_graph()) {
    graphs_.fail(what);
  } else {
    record_fault(what);
  }
}

std::string CudaBackend::take_error() {
  std::string e;
  std::swap(e, error_);
  return e;
}

bool CudaBackend::memory_info(size_t* free_bytes, size_t* total_bytes) const {
  return cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess;
}

bool CudaBackend::memory_held(size_t* peak, size_t* slack) const {
  // Every tensor comes from the device's default pool (device_tensor), whose used high-water mark
  // covers the weights and the warm-up's peak; beside it the cuBLAS workspace, the graph arena and
  // the context with its libraries (an estimate: CUDA reports no per-process use).
  constexpr size_t kContextBytes = size_t(768) << 20;
  cudaMemPool_t pool = nullptr;
  uint64_t used_high = 0, used = 0, reserved = 0;
  if (cudaDeviceGetDefaultMemPool(&pool, device_index_) != cudaSuccess ||
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &used_high) != cudaSuccess ||
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used) != cudaSuccess ||
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  *peak = size_t(used_high) + (cublas_workspace_ ? kCublasWorkspaceBytes : 0) + expert_streams_.bytes() +
          graphs_.arena_bytes() + kContextBytes;
  *slack = reserved > used ? size_t(reserved - used) : 0;
  return true;
}

void CudaBackend::reset_memory_peak() {
  cudaMemPool_t pool = nullptr;
  uint64_t zero = 0;  // resets the mark to what is in use now
  if (cudaDeviceGetDefaultMemPool(&pool, device_index_) != cudaSuccess ||
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero) != cudaSuccess)
    cudaGetLastError();
}

Tensor CudaBackend::empty(DType dtype, std::vector<int64_t> shape) {
  if (in_graph()) return graphs_.forward_tensor(dtype, std::move(shape));
  return device_tensor(dtype, std::move(shape));
}

Tensor CudaBackend::scratch(DType dtype, std::vector<int64_t> shape) {
  if (in_graph()) return graphs_.op_tensor(dtype, std::move(shape));
  return device_tensor(dtype, std::move(shape));
}

Tensor CudaBackend::device_tensor(DType dtype, std::vector<int64_t> shape) {
  auto storage = std::make_shared<Storage>();
  storage->nbytes = size_t(numel_of(shape)) * dtype_size(dtype);
  storage->device = Device::cuda;
  if (cudaMallocAsync(&storage->data, storage->nbytes == 0 ? 16 : storage->nbytes, nullptr) != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; status() keeps it
    record_fault("cudaMalloc of " + std::to_string(storage->nbytes) + " bytes failed: " +
                 cudaGetErrorString(cudaErrorMemoryAllocation));
    // NOTE: the one exception the backend throws, caught at the engine's (and stage runner's)
    // loop; ops cannot return errors, and an undefined tensor would fault the next kernel.
    throw std::bad_alloc();
  }
  storage->deleter = free_device;
  return Tensor::wrap(std::move(storage), dtype, std::move(shape));
}

Tensor CudaBackend::on_device(const Tensor& t) {
  if (!t.defined() || t.device() == Device::cuda) return t;
  if (in_graph()) return graphs_.upload(t, stream_);
  Tensor d = device_tensor(t.dtype(), t.shape());
  // From pageable memory: returns once the bytes are staged, so `t` may go right after.
  check(cudaMemcpyAsync(d.raw(), t.raw(), t.nbytes(), cudaMemcpyHostToDevice, stream_), "upload");
  return d;
}

Result<Tensor> CudaBackend::upload_weight(const Tensor& host) {
  if (host.has_block_scale()) return upload_block_fp8_weight(host);
  try {
    return upload_weight_or_throw(host);
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::out_of_resources, "uploading a weight to the GPU: " + fault_);
  }
}

Result<Tensor> CudaBackend::upload_weight_or_throw(const Tensor& host) {
  Tensor source = host.device() == Device::cuda ? to_host(host) : host;
  const DType source_dtype = source.dtype();
  if (source_dtype != DType::f32 && source_dtype != DType::bf16 && source_dtype != DType::f16) {
    float probe = 0;
    if (!convert_to_f32(source_dtype, source.raw(), 0, &probe))
      return make_error(ErrorCode::unsupported, std::string("weights of dtype ") + std::string(dtype_name(source_dtype)) +
                                                    " cannot be computed in fp32");
  }
  // Matrices are held in the backend's weight dtype, everything else in fp32. The bytes go up
  // through pinned staging; a conversion (bf16 <- f32 / f16, f32 <- bf16 / f16) runs per chunk
  // on the host while the previous chunk is in flight.
  const DType target = weight_dtype_ == DType::bf16 && source.dim() == 2 ? DType::bf16 : DType::f32;
  Tensor d = device_tensor(target, source.shape());
  const auto* in = static_cast<const uint8_t*>(source.raw());
  cudaError_t status = cudaSuccess;
  if (source_dtype == target) {
    status = pinned_upload_.copy(d.raw(), in, d.nbytes());
  } else {
    const size_t in_size = dtype_size(source_dtype), out_size = dtype_size(target);
    std::vector<float> wide;
    bool converted = true;
    status = pinned_upload_.copy(d.raw(), d.nbytes(), [&](uint8_t* staging, size_t offset, size_t count) {
      const size_t first = offset / out_size, n = count / out_size;
      if (target == DType::f32) {
        converted &= convert_to_f32(source_dtype, in + first * in_size, n, reinterpret_cast<float*>(staging));
        return;
      }
      wide.resize(n);
      converted &= convert_to_f32(source_dtype, in + first * in_size, n, wide.data());
      auto* bits = reinterpret_cast<uint16_t*>(staging);
      for (size_t i = 0; i < n; ++i) bits[i] = f32_to_bf16(wide[i]);
    });
    if (!converted)
      return make_error(ErrorCode::unsupported, std::string("weights of dtype ") + std::string(dtype_name(source_dtype)) +
                                                    " cannot be computed in fp32");
  }
  if (status != cudaSuccess)
    return make_error(ErrorCode::out_of_resources, std::string("uploading a weight to the GPU failed: ") +
                                                       cudaGetErrorString(status));
  return d;
}

bool is_kv_cache_dtype(DType dtype) { return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f8_e4m3; }

Result<KvCache> CudaBackend::create_kv_cache(const KvCacheSpec& spec) {
  if (spec.num_blocks <= 0 || spec.block_size <= 0 || spec.num_layers <= 0)
    return make_error(ErrorCode::invalid_argument, "KV cache: blocks, block size and layers must be positive");
  if (spec.dtype != DType::f32 && spec.dtype != DType::bf16 && spec.dtype != DType::f8_e4m3)
    return make_error(ErrorCode::invalid_argument, "KV cache: dtype " + std::string(dtype_name(spec.dtype)) +
                                                       " is not supported on CUDA (f32, bf16 or f8_e4m3)");
  TROUPE_TRY(KvCache::check_scales(spec));
  std::vector<Tensor> tensors;
  try {
    for (int64_t layer = 0; layer < spec.num_layers; ++layer) {
      for (const auto& c : spec.components) {
        Tensor t = device_tensor(spec.dtype, {spec.num_blocks, spec.block_size, c.num_heads, c.head_dim});
        cudaMemset(t.raw(), 0, t.nbytes());
        tensors.push_back(std::move(t));
      }
    }
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::out_of_resources, "KV cache of " + std::to_string(spec.num_blocks) + " blocks: " + fault_);
  }
  return KvCache::wrap(spec, std::move(tensors));
}

AttentionMetadata CudaBackend::upload_metadata(AttentionMetadata host) {
  std::vector<int32_t> seq_of_token(size_t(host.num_tokens));
  const int32_t* starts = host.query_start.data<int32_t>();
  for (int64_t s = 0; s < host.num_seqs; ++s)
    for (int32_t t = starts[s]; t < starts[s + 1]; ++t) seq_of_token[size_t(t)] = int32_t(s);
  seq_of_token_ = on_device(Tensor::from_i32(seq_of_token, {host.num_tokens}));
  query_start_host_.assign(starts, starts + host.num_seqs + 1);
  const int32_t* context_lens = host.context_lens.data<int32_t>();
  context_lens_host_.assign(context_lens, context_lens + host.num_seqs);
  plan_tokens_per_tile_ = 0;
  host.positions = on_device(host.positions);
  host.slot_mapping = on_device(host.slot_mapping);
  host.query_start = on_device(host.query_start);
  host.context_lens = on_device(host.context_lens);
  host.block_tables = on_device(host.block_tables);
  return host;
}

void CudaBackend::bind_thread() { check(cudaSetDevice(device_index_), "cudaSetDevice"); }

Tensor CudaBackend::to_host(const Tensor& t) {
  if (!t.defined() || t.device() == Device::cpu) return t;
  Tensor h = Tensor::empty(t.dtype(), t.shape());
  if (in_graph()) {
    // A recorded step cannot wait for the device (the MoE per-expert loop reads its routing): the
    // step is dropped and runs eagerly; the zeros returned are never used for an answer.
    graphs_.fail("a step that reads device values on the host is not recorded");
    std::memset(h.raw(), 0, h.nbytes());
    return h;
  }
  check(cudaMemcpy(h.raw(), t.raw(), t.nbytes(), cudaMemcpyDeviceToHost), "download");
  return h;
}

void CudaBackend::embedding(const Tensor& ids, const Tensor& table, Tensor out) {
  Tensor d_ids = on_device(ids);
  if (replaying()) return;
  if (table.dtype() == DType::bf16) {
    check(launch_embedding_bf16(d_ids.data<int32_t>(), table.data<uint16_t>(), out.data<float>(), ids.numel(),
                                table.size(1), stream()),
          "embedding");
    return;
  }
  check(launch_embedding_f32(d_ids.data<int32_t>(), table.data<float>(), out.data<float>(), ids.numel(),
                             table.size(1), stream()),
        "embedding");
}

void CudaBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  Tensor dx = on_device(x);
  if (replaying()) return;
  const int64_t hidden = weight.numel();
  if (out.dtype() == DType::bf16) {
    check(launch_rmsnorm_f32_to_bf16(dx.data<float>(), weight.data<float>(), out.data<uint16_t>(), dx.numel() / hidden,
                                     hidden, eps, stream()),
          "rmsnorm");
    return;
  }
  check(launch_rmsnorm_f32(dx.data<float>(), weight.data<float>(), out.data<float>(), dx.numel() / hidden, hidden,
                           eps, stream()),
        "rmsnorm");
}

void CudaBackend::add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  Tensor dx = on_device(x);
  if (replaying()) return;
  const int64_t hidden = weight.numel();
  if (out.dtype() == DType::bf16) {
    check(launch_add_rmsnorm_f32_to_bf16(residual.data<float>(), dx.data<float>(), weight.data<float>(),
                                         out.data<uint16_t>(), residual.numel() / hidden, hidden, eps, stream()),
          "add_rmsnorm");
    return;
  }
  check(launch_add_rmsnorm_f32(residual.data<float>(), dx.data<float>(), weight.data<float>(), out.data<float>(),
                               residual.numel() / hidden, hidden, eps, stream()),
        "add_rmsnorm");
}

void CudaBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) {
  if (weight.dtype() == DType::f8_e4m3) return linear_fp8_weight(x, weight, bias, out);
  Tensor dx = on_device(x);
  if (replaying()) return;
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  const int64_t n = dx.numel() / in_features;
  if (n == 0) return;
  if (dx.dtype() == DType::bf16) {
    linear_bf16_x(dx, weight, bias, out);
    return;
  }
  if (weight.dtype() == DType::bf16 && n <= kGemvMaxTokens) {
    // Decode-sized batches: one pass over the bf16 weights, fp32 activations, bias fused.
    check(launch_gemv_bf16(dx.data<float>(), weight.data<uint16_t>(), bias.defined() ? bias.data<float>() : nullptr,
                           out.data<float>(), n, out_features, in_features, stream()),
          "gemv_bf16");
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st;
  if (weight.dtype() == DType::bf16) {
    // bf16 x bf16 -> fp32 with fp32 accumulation; the activations are rounded to bf16 first.
    Tensor x16 = scratch(DType::bf16, {n, in_features});
    check(launch_f32_to_bf16(dx.data<float>(), x16.data<uint16_t>(), n * in_features, stream()), "f32_to_bf16");
    st = cublasGemmEx(handle(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, int(out_features), int(n), int(in_features), &alpha,
                      weight.raw(), CUDA_R_16BF, int(in_features), x16.raw(), CUDA_R_16BF, int(in_features), &beta,
                      out.raw(), CUDA_R_32F, int(out_features), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  } else {
  // Row-major out[n, out] = x[n, in] @ W[out, in]^T is column-major out^T = W^T(op T) x^T.
  st = cublasSgemm(handle(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, int(out_features), int(n),
                                  int(in_features), &alpha, weight.data<float>(), int(in_features),
                                  dx.data<float>(), int(in_features), &beta, out.data<float>(), int(out_features));
  }
  check_cublas(int(st));
  if (bias.defined())
    check(launch_add_bias_f32(out.data<float>(), bias.data<float>(), n, out_features, stream()), "add_bias");
}

// x already bf16 (matmul_input_dtype): the GEMV reads it directly, cuBLAS takes it as is.
void CudaBackend::linear_bf16_x(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) {
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  const int64_t n = x.numel() / in_features;
  if (weight.dtype() != DType::bf16) {
    record_fault("linear: bf16 activations need a bf16 weight, not " + std::string(dtype_name(weight.dtype())));
    return;
  }
  if (n <= kGemvMaxTokens) {
    const float* b = bias.defined() ? bias.data<float>() : nullptr;
    check(launch_gemv_bf16_x16(x.data<uint16_t>(), weight.data<uint16_t>(), b, out.data<float>(), n, out_features,
                               in_features, stream()),
          "gemv_bf16");
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t st = cublasGemmEx(handle(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, int(out_features), int(n),
                                         int(in_features), &alpha, weight.raw(), CUDA_R_16BF, int(in_features), x.raw(),
                                         CUDA_R_16BF, int(in_features), &beta, out.raw(), CUDA_R_32F,
                                         int(out_features), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  check_cublas(int(st));
  if (bias.defined())
    check(launch_add_bias_f32(out.data<float>(), bias.data<float>(), n, out_features, stream()), "add_bias");
}

void CudaBackend::rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& inv_freq) {
  Tensor d_pos = on_device(positions);
  if (replaying()) return;
  const int64_t n = positions.numel(), head_dim = q.size(-1);
  check(launch_rope_f32(q.data<float>(), k.data<float>(), d_pos.data<int32_t>(), inv_freq.data<float>(), n,
                        q.numel() / (n * head_dim), k.numel() / (n * head_dim), head_dim, inv_freq.numel(), stream()),
        "rope");
}

void CudaBackend::write_kv(Tensor cache_component, const Tensor& x, const Tensor& slot_mapping) {
  Tensor d_slots = on_device(slot_mapping);
  if (replaying()) return;
  const int64_t n = slot_mapping.numel();
  if (n == 0) return;
  if (cache_component.dtype() == DType::bf16) {
    check(launch_write_kv_f32(cache_component.data<uint16_t>(), x.data<float>(), d_slots.data<int32_t>(), n,
                              x.numel() / n, stream()),
          "write_kv");
    return;
  }
  if (cache_component.dtype() == DType::f8_e4m3) {
    check(launch_write_kv_f32(cache_component.data<uint8_t>(), x.data<float>(), d_slots.data<int32_t>(), n,
                              x.numel() / n, cache_component.tensor_scale(), stream()),
          "write_kv");
    return;
  }
  check(launch_write_kv_f32(cache_component.data<float>(), x.data<float>(), d_slots.data<int32_t>(), n, x.numel() / n,
                            stream()),
        "write_kv");
}

void CudaBackend::qkv_rope_write_kv(const Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                    const Tensor& slot_mapping, Tensor k_cache, Tensor v_cache, Tensor q_out,
                                    const QkNorm& qk_norm) {
  const int64_t n = q_out.size(0);
  if (n == 0) return;
  Tensor d_pos = on_device(positions), d_slots = on_device(slot_mapping);
  if (replaying()) return;
  if (k_cache.dtype() != v_cache.dtype() || !is_kv_cache_dtype(k_cache.dtype())) {
    check(cudaErrorInvalidValue, "qkv_rope_write_kv (K and V caches must both be f32, bf16 or f8_e4m3)");
    return;
  }
  for (const Tensor* w : {&qk_norm.q_weight, &qk_norm.k_weight}) {
    if (w->defined() && (w->dtype() != DType::f32 || w->numel() != q_out.size(2))) {
      check(cudaErrorInvalidValue, "qkv_rope_write_kv (q/k norm weights must be f32 [head_dim])");
      return;
    }
  }
  const HeadNorms norms{qk_norm.q_weight.defined() ? qk_norm.q_weight.data<float>() : nullptr,
                        qk_norm.k_weight.defined() ? qk_norm.k_weight.data<float>() : nullptr, qk_norm.eps};
  if (k_cache.dtype() == DType::f8_e4m3) {
    check(launch_qkv_rope_write_kv_f32(qkv.data<float>(), d_pos.data<int32_t>(), inv_freq.data<float>(),
                                       d_slots.data<int32_t>(), k_cache.data<uint8_t>(), v_cache.data<uint8_t>(),
                                       q_out.data<float>(), n, q_out.size(1), k_cache.size(2), q_out.size(2),
                                       inv_freq.numel(), k_cache.tensor_scale(), v_cache.tensor_scale(), norms,
                                       stream()),
          "qkv_rope_write_kv");
    return;
  }
  auto run = [&](auto* k, auto* v) {
    check(launch_qkv_rope_write_kv_f32(qkv.data<float>(), d_pos.data<int32_t>(), inv_freq.data<float>(),
                                       d_slots.data<int32_t>(), k, v, q_out.data<float>(), n, q_out.size(1),
                                       k_cache.size(2), q_out.size(2), inv_freq.numel(), norms, stream()),
          "qkv_rope_write_kv");
  };
  if (k_cache.dtype() == DType::bf16) {
    run(k_cache.data<uint16_t>(), v_cache.data<uint16_t>());
  } else {
    run(k_cache.data<float>(), v_cache.data<float>());
  }
}

void CudaBackend::silu_and_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  if (replaying()) return;
  check(launch_silu_and_mul_f32(gate.data<float>(), up.data<float>(), out.data<float>(), out.numel(), stream()),
        "silu_and_mul");
}

void CudaBackend::silu_and_mul_packed(const Tensor& gate_up, Tensor out) {
  const int64_t inter = out.size(-1);
  if (inter == 0 || replaying()) return;
  if (out.dtype() == DType::bf16) {
    check(launch_silu_and_mul_packed_f32_to_bf16(gate_up.data<float>(), out.data<uint16_t>(), out.numel() / inter,
                                                 inter, stream()),
          "silu_and_mul_packed");
    return;
  }
  check(launch_silu_and_mul_packed_f32(gate_up.data<float>(), out.data<float>(), out.numel() / inter, inter, stream()),
        "silu_and_mul_packed");
}

void CudaBackend::mlp(const Tensor& x, const Tensor& gate_up_weight, const Tensor& gate_up_bias,
                      const Tensor& down_weight, const Tensor& down_bias, Tensor out) {
  const int64_t n = out.size(0), inter = down_weight.size(1);
  if (mlp_fp8_block(x, gate_up_weight, gate_up_bias, down_weight, down_bias, out)) return;
  // Decode sizes: the default's GEMVs with the bf16 activation between them (a down GEMV computing
  // silu(g) * u itself reads 8x the activation bytes and was slower on the H100; an FP8 gate_up
  // forming it from its sums, in the f16 kernel's 8 gate + 8 up row tiles, cost each step 1-2%
  // on the H200: Llama-3-8B FP8 b1 3.262 against 3.235 ms, R1 reduced 2.187 against 2.130,
  // bench/results/*2026-12-04_silu_fused_experiment*).
  // (Other FP8 weights take the default too: its two linear calls run the FP8 kernels.)
  if (n <= kGemvMaxTokens || gate_up_weight.dtype() != DType::bf16 || down_weight.dtype() != DType::bf16 ||
      gate_up_bias.defined()) {
    Backend::mlp(x, gate_up_weight, gate_up_bias, down_weight, down_bias, out);
    return;
  }
  Tensor dx = on_device(x);
  if (n == 0 || replaying()) return;
  Tensor x16 = dx;
  if (dx.dtype() != DType::bf16) {
    x16 = scratch(DType::bf16, {n, dx.size(-1)});
    check(launch_f32_to_bf16(dx.data<float>(), x16.data<uint16_t>(), dx.numel(), stream()), "f32_to_bf16");
  }
  // [n, 2I] = x [n, hidden] @ W_gu^T, written in bf16 (fp32 accumulation).
  Tensor gate_up = scratch(DType::bf16, {n, 2 * inter});
  const float alpha = 1.0f, beta = 0.0f;
  const int64_t in_features = gate_up_weight.size(1);
  const cublasStatus_t st =
      cublasGemmEx(handle(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, int(2 * inter), int(n), int(in_features), &alpha,
                   gate_up_weight.raw(), CUDA_R_16BF, int(in_features), x16.raw(), CUDA_R_16BF, int(in_features), &beta,
                   gate_up.raw(), CUDA_R_16BF, int(2 * inter), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  check_cublas(int(st));
  Tensor act = scratch(DType::bf16, {n, inter});
  check(launch_silu_and_mul_packed_bf16(gate_up.data<uint16_t>(), act.data<uint16_t>(), n, inter, stream()),
        "silu_and_mul_packed");
  linear(act, down_weight, down_bias, out);
}

void CudaBackend::copy(const Tensor& src, Tensor dst) {
  const Tensor from = in_graph() ? on_device(src) : src;  // host sources go through the staging
  if (replaying()) return;
  const cudaMemcpyKind kind = from.device() == Device::cuda ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
  check(cudaMemcpyAsync(dst.raw(), from.raw(), from.nbytes(), kind, stream_), "copy");
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  Tensor da = on_device(a), db = on_device(b);
  if (replaying()) return;
  check(launch_add_f32(da.data<float>(), db.data<float>(), out.data<float>(), out.numel(), stream()), "add");
}

void CudaBackend::gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) {
  if (rows.empty()) return;
  Tensor d_rows = on_device(Tensor::from_i32(rows, {int64_t(rows.size())}));
  if (replaying()) return;
  if (x.dtype() == DType::bf16) {
    check(launch_gather_rows_bf16(x.data<uint16_t>(), d_rows.data<int32_t>(), out.data<uint16_t>(),
                                  int64_t(rows.size()), x.size(-1), stream()),
          "gather_rows");
    return;
  }
  check(launch_gather_rows_f32(x.data<float>(), d_rows.data<int32_t>(), out.data<float>(), int64_t(rows.size()),
                               x.size(-1), stream()),
        "gather_rows");
}

std::vector<int32_t> CudaBackend::argmax(const Tensor& logits) {
  Tensor d_logits = on_device(logits);
  const int64_t rows = d_logits.size(0), vocab = d_logits.size(1);
  Tensor d_out = scratch(DType::i32, {rows});
  check(launch_argmax_f32(d_logits.data<float>(), d_out.data<int32_t>(), rows, vocab, stream()), "argmax");
  Tensor h = to_host(d_out);
  return std::vector<int32_t>(h.data<int32_t>(), h.data<int32_t>() + rows);
}

bool CudaBackend::apply_token_masks(const Tensor& logits, const std::vector<DeviceSampleRow>& rows) {
  const int64_t vocab = logits.size(1), num_words = (vocab + 31) / 32;
  std::vector<int32_t> masked_rows;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].allowed == nullptr) continue;
    if (rows[r].num_allowed_words < num_words) return false;  // a mask too short for the vocabulary
    masked_rows.push_back(int32_t(r));
  }
  if (masked_rows.empty()) return true;
  const int64_t num_masked = int64_t(masked_rows.size());
  // The masks, one row of words each, uploaded once: [num_masked, num_words].
  Tensor host_masks = Tensor::empty(DType::i32, {num_masked, num_words});
  uint32_t* words = static_cast<uint32_t*>(host_masks.raw());
  for (int64_t k = 0; k < num_masked; ++k)
    std::copy_n(rows[size_t(masked_rows[size_t(k)])].allowed, num_words, words + k * num_words);
  const Tensor d_masks = on_device(host_masks);
  const Tensor d_rows = on_device(Tensor::from_i32(masked_rows, {num_masked}));
  // NOTE: the logits are the step's own; the mask writes -inf into them, as the host Sampler's
  // copy would be masked (a later host fallback masks them again, to the same values).
  float* data = static_cast<float*>(const_cast<void*>(logits.raw()));
  const cudaError_t err = launch_apply_token_mask_f32(data, vocab, d_rows.data<int32_t>(), num_masked,
                                                      static_cast<const uint32_t*>(d_masks.raw()), num_words, stream());
  if (err != cudaSuccess) {
    check(err, "token mask");
    return false;
  }
  return true;
}

bool CudaBackend::sample_on_device(const Tensor& logits, const std::vector<DeviceSampleRow>& rows,
                                   std::vector<int32_t>* ids) {
  if (ids == nullptr || !logits.defined() || logits.device() != Device::cuda || logits.dtype() != DType::f32 ||
      logits.dim() != 2 || logits.size(0) != int64_t(rows.size()))
    return false;
  cudaPointerAttributes where{};
  if (cudaPointerGetAttributes(&where, logits.raw()) != cudaSuccess || where.device != device_index_) {
    cudaGetLastError();  // not this GPU's memory: leave it to the host sampler
    return false;
  }
  const int64_t num_rows = logits.size(0), vocab = logits.size(1);
  ids->clear();
  if (num_rows == 0) return true;
  if (!apply_token_masks(logits, rows)) return false;
  std::vector<SampleRow> kernel_rows;
  kernel_rows.reserve(rows.size());
  for (const DeviceSampleRow& r : rows) kernel_rows.push_back(SampleRow{r.temperature, r.top_k, r.top_p, r.min_p, r.uniform});
  const size_t bytes = sample_workspace_bytes(kernel_rows.data(), num_rows, vocab);
  if (bytes == 0) return false;
  Tensor workspace = scratch(DType::u8, {int64_t(bytes)});  // freed stream-ordered
  Tensor d_out = scratch(DType::i32, {num_rows});
  const cudaError_t err = launch_sample_f32(logits.data<float>(), kernel_rows.data(), num_rows, vocab,
                                            d_out.data<int32_t>(), workspace.raw(), bytes, stream());
  if (err != cudaSuccess) {
    check(err, "sample");
    return false;
  }
  Tensor h = to_host(d_out);
  ids->assign(h.data<int32_t>(), h.data<int32_t>() + num_rows);
  for (int32_t id : *ids)
    if (id < 0 || id >= vocab) return false;
  return true;
}

}  // namespace troupe::cuda

// Sampling kernels: one block per row. Rows with top-k or top-p need the best-first order; it
// comes from one device radix sort of (row, descending logit) keys with the ids as values (stable,
// so ties keep the lower id first), then every cut (top-k mass, top-p prefix, min-p prefix, the
// pick itself) is a "first prefix whose sum passes a goal" search over block-wide double scans,
// as the host Sampler walks its candidates with double sums of the same float exps.
#include "kernels/sampling.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

namespace troupe::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kItems = 8;                                   // consecutive positions per thread
constexpr int64_t kTile = int64_t(kThreads) * kItems;
constexpr int64_t kMaxSortElements = int64_t(1) << 22;      // keys of one sort (rows are chunked)
constexpr size_t kAlign = 256;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// A row needs the best-first order when top-k or top-p is on (as Sampler::pick's sorted path).
__host__ __device__ bool needs_sort(const SampleRow& r, int64_t vocab) {
  if (r.temperature == 0.0) return false;
  return (r.top_k >= 1 && r.top_k < vocab) || r.top_p < 1.0;
}

struct MaxAt {
  float value;
  int32_t index;
};

struct MaxAtOp {  // larger value, then lower index
  __device__ MaxAt operator()(const MaxAt& a, const MaxAt& b) const {
    return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
  }
};

using Scan = cub::BlockScan<double, kThreads>;
using ArgMaxReduce = cub::BlockReduce<MaxAt, kThreads>;

struct Shared {
  union {
    Scan::TempStorage scan;
    ArgMaxReduce::TempStorage reduce;
  } temp;
  int first;
  int last;
  MaxAt best;
};

// The first position j in [0, n) whose inclusive prefix sum of weight(j) passes goal (> when
// strict, else >=), or -1 when none does; then *total (when given) is the sum over [0, n).
// Weights must be >= 0. All threads of the block call it and get the same answer.
template <class Weight>
__device__ int64_t find_crossing(int64_t n, const Weight& weight, double goal, bool strict, Shared& sh,
                                 double* total) {
  double carry = 0.0;
  for (int64_t base = 0; base < n; base += kTile) {
    const int64_t first_j = base + int64_t(threadIdx.x) * kItems;
    double w[kItems];
    double local = 0.0;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      w[k] = first_j + k < n ? weight(first_j + k) : 0.0;
      local += w[k];
    }
    double before = 0.0, tile_sum = 0.0;
    Scan(sh.temp.scan).ExclusiveSum(local, before, tile_sum);
    if (threadIdx.x == 0) sh.first = INT_MAX;
    __syncthreads();
    double run = carry + before;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      if (first_j + k >= n) break;
      run += w[k];
      if (strict ? run > goal : run >= goal) {
        atomicMin(&sh.first, int(threadIdx.x) * kItems + k);
        break;
      }
    }
    __syncthreads();
    const int first = sh.first;
    __syncthreads();  // sh is reused by the next tile
    if (first != INT_MAX) return base + first;
    carry += tile_sum;
  }
  if (total) *total = carry;
  return -1;
}

// logits: [rows, vocab]; params: [rows] (device); sorted: [rows, vocab] best-first ids, or null
// when no row needs them; out: [rows].
__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* logits, int64_t vocab, const SampleRow* params, const int32_t* sorted,
                  int32_t* out) {
  __shared__ Shared sh;
  const int64_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  const SampleRow p = params[row];

  // The maximum and its lowest index (the host's argmax), and the NaN check.
  MaxAt mine{-INFINITY, INT_MAX};
  bool nan = false;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = x[i];
    nan |= v != v;
    if (v > mine.value) mine = MaxAt{v, int32_t(i)};
  }
  const int any_nan = __syncthreads_or(nan);
  const MaxAt best = ArgMaxReduce(sh.temp.reduce).Reduce(mine, MaxAtOp());
  if (threadIdx.x == 0) sh.best = best;
  __syncthreads();
  const float max_value = sh.best.value;
  if (any_nan || !isfinite(max_value)) {
    if (threadIdx.x == 0) out[row] = -1;
    return;
  }
  if (p.temperature == 0.0) {
    if (threadIdx.x == 0) out[row] = sh.best.index;
    return;
  }

  // As Sampler::sample_row / pick: exp((x - max) * float(1 / T)) in float, sums in double,
  // min-p as x >= max + T * log(min_p) in double.
  const float inv_temperature = float(1.0 / p.temperature);
  const double log_min_p = p.min_p > 0.0 ? log(p.min_p) : -INFINITY;
  const double threshold = double(max_value) + p.temperature * log_min_p;
  auto weight_of = [&](float v) { return double(expf((v - max_value) * inv_temperature)); };

  if (!needs_sort(p, vocab)) {
    // Candidates: x >= threshold, walked in id order.
    auto candidate = [&](int64_t i) {
      const float v = x[i];
      return double(v) >= threshold ? weight_of(v) : 0.0;
    };
    double total = 0.0;
    find_crossing(vocab, candidate, INFINITY, true, sh, &total);
    int64_t j = find_crossing(vocab, candidate, p.uniform * total, true, sh, nullptr);
    if (j < 0) {  // rounding: the last candidate
      if (threadIdx.x == 0) sh.last = -1;
      __syncthreads();
      int last = -1;
      for (int64_t i = threadIdx.x; i < vocab; i += kThreads)
        if (double(x[i]) >= threshold) last = int(i);
      atomicMax(&sh.last, last);
      __syncthreads();
      j = sh.last;
    }
    if (threadIdx.x == 0) out[row] = int32_t(j);
    return;
  }

  const int32_t* order = sorted + row * vocab;
  auto sorted_weight = [&](int64_t j) { return weight_of(x[order[j]]); };
  const bool top_k_on = p.top_k >= 1 && p.top_k < vocab;
  const int64_t num_sorted = top_k_on ? p.top_k : vocab;
  // The mass top-p sees: the top-k's when top-k is on, else the whole row's.
  double norm = 0.0;
  if (top_k_on) {
    find_crossing(num_sorted, sorted_weight, INFINITY, true, sh, &norm);
  } else {
    auto id_weight = [&](int64_t i) { return weight_of(x[i]); };
    find_crossing(vocab, id_weight, INFINITY, true, sh, &norm);
  }
  int64_t num_keep = num_sorted;
  if (p.top_p < 1.0) {  // the shortest best-first prefix whose mass reaches top_p
    const int64_t j = find_crossing(num_sorted, sorted_weight, p.top_p * norm, false, sh, nullptr);
    if (j >= 0) num_keep = j + 1;
  }
  int64_t num_candidates = num_keep;
  if (p.min_p > 0.0) {  // the leading ids at or above the min-p threshold (at least one)
    auto below = [&](int64_t j) { return double(x[order[j]]) >= threshold ? 0.0 : 1.0; };
    const int64_t j = find_crossing(num_keep, below, 0.0, true, sh, nullptr);
    if (j >= 0) num_candidates = j > 1 ? j : 1;
  }
  double total = 0.0;
  find_crossing(num_candidates, sorted_weight, INFINITY, true, sh, &total);
  int64_t j = find_crossing(num_candidates, sorted_weight, p.uniform * total, true, sh, nullptr);
  if (j < 0) j = num_candidates - 1;
  if (threadIdx.x == 0) out[row] = order[j];
}

// keys[i] = (row << 32) | descending order of the logit (-0 as +0); ids[i] = i % vocab.
__global__ void sort_keys_kernel(const float* logits, int64_t vocab, int64_t n, uint64_t* keys, int32_t* ids) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = logits[i];
  if (v == 0.0f) v = 0.0f;
  uint32_t bits = __float_as_uint(v);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);  // ascending with the float
  keys[i] = (uint64_t(i / vocab) << 32) | uint64_t(~bits);
  ids[i] = int32_t(i % vocab);
}

// How launch_sample_f32 splits the rows for sorting and what each sort needs.
struct SortPlan {
  bool any = false;
  int64_t chunk_rows = 0;
  int end_bit = 32;
  size_t temp_bytes = 0;
};

SortPlan plan_sort(const SampleRow* rows, int64_t num_rows, int64_t vocab) {
  SortPlan plan;
  for (int64_t r = 0; r < num_rows && !plan.any; ++r) plan.any = needs_sort(rows[r], vocab);
  if (!plan.any) return plan;
  plan.chunk_rows = std::max<int64_t>(1, std::min<int64_t>(num_rows, kMaxSortElements / vocab));
  while ((int64_t(1) << (plan.end_bit - 32)) < plan.chunk_rows) ++plan.end_bit;
  cub::DoubleBuffer<uint64_t> keys(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
  if (cub::DeviceRadixSort::SortPairs(nullptr, plan.temp_bytes, keys, ids, int(plan.chunk_rows * vocab), 0,
                                      plan.end_bit) != cudaSuccess)
    plan.temp_bytes = 0;
  return plan;
}

struct Workspace {
  SampleRow* params;
  uint64_t* keys[2];
  int32_t* ids[2];
  void* temp;
  size_t bytes;
};

// Lays the workspace out from `base` (0: only sizes it).
Workspace carve(uintptr_t base, int64_t num_rows, int64_t vocab, const SortPlan& plan) {
  const uintptr_t p = base;
  Workspace w{};
  size_t at = 0;
  w.params = reinterpret_cast<SampleRow*>(p + at);
  at += align_up(size_t(num_rows) * sizeof(SampleRow));
  if (plan.any) {
    const size_t n = size_t(plan.chunk_rows * vocab);
    for (auto& k : w.keys) {
      k = reinterpret_cast<uint64_t*>(p + at);
      at += align_up(n * sizeof(uint64_t));
    }
    for (auto& i : w.ids) {
      i = reinterpret_cast<int32_t*>(p + at);
      at += align_up(n * sizeof(int32_t));
    }
    w.temp = reinterpret_cast<void*>(p + at);
    at += align_up(plan.temp_bytes);
  }
  w.bytes = at;
  return w;
}

bool bad_sizes(int64_t num_rows, int64_t vocab) {
  return num_rows < 0 || num_rows > INT32_MAX || vocab <= 0 || vocab > INT32_MAX;
}

}  // namespace

size_t sample_workspace_bytes(const SampleRow* rows, int64_t num_rows, int64_t vocab) {
  if (bad_sizes(num_rows, vocab)) return 0;
  return carve(0, num_rows, vocab, plan_sort(rows, num_rows, vocab)).bytes;
}

cudaError_t launch_sample_f32(const float* logits, const SampleRow* rows, int64_t num_rows, int64_t vocab,
                              int32_t* out, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (bad_sizes(num_rows, vocab) || rows == nullptr || workspace == nullptr) return cudaErrorInvalidValue;
  const SortPlan plan = plan_sort(rows, num_rows, vocab);
  if (plan.any && plan.temp_bytes == 0) return cudaErrorInvalidValue;
  const Workspace w = carve(reinterpret_cast<uintptr_t>(workspace), num_rows, vocab, plan);
  if (workspace_bytes < w.bytes) return cudaErrorInvalidValue;
  cudaError_t err = cudaMemcpyAsync(w.params, rows, size_t(num_rows) * sizeof(SampleRow),
                                    cudaMemcpyHostToDevice, stream);
  if (err != cudaSuccess) return err;
  if (!plan.any) {
    sample_kernel<<<unsigned(num_rows), kThreads, 0, stream>>>(logits, vocab, w.params, nullptr, out);
    return cudaGetLastError();
  }
  for (int64_t r0 = 0; r0 < num_rows; r0 += plan.chunk_rows) {
    const int64_t count = std::min(plan.chunk_rows, num_rows - r0);
    const float* chunk = logits + r0 * vocab;
    const int32_t* sorted = nullptr;
    bool chunk_sorts = false;
    for (int64_t r = r0; r < r0 + count && !chunk_sorts; ++r) chunk_sorts = needs_sort(rows[r], vocab);
    if (chunk_sorts) {
      const int64_t n = count * vocab;
      sort_keys_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(chunk, vocab, n, w.keys[0], w.ids[0]);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
      cub::DoubleBuffer<uint64_t> keys(w.keys[0], w.keys[1]);
      cub::DoubleBuffer<int32_t> ids(w.ids[0], w.ids[1]);
      size_t temp_bytes = plan.temp_bytes;
      err = cub::DeviceRadixSort::SortPairs(w.temp, temp_bytes, keys, ids, int(n), 0, plan.end_bit, stream);
      if (err != cudaSuccess) return err;
      sorted = ids.Current();
    }
    sample_kernel<<<unsigned(count), kThreads, 0, stream>>>(chunk, vocab, w.params + r0, sorted, out + r0);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace troupe::kernels

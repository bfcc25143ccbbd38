// NcclCollective on one GPU (a group of one rank: the only size one GPU allows): all_gather's
// strided placement of the rank's block into the columns of `out`, padding columns dropped,
// all_reduce_sum as the identity, and all_to_all_counts / all_to_all moving bf16 rows to itself. The multi-rank paths need nvidia-h200-x2 or larger.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_nccl_collective.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

TEST(NcclCollective, OneRankGathersItsBlockIntoTheColumnsOfOut) {
  TROUPE_REQUIRE_GPU();
  auto created = cuda::CudaBackend::create(0);
  ASSERT_TRUE(created.ok()) << created.error().message;
  cuda::CudaBackend& gpu = **created;
  auto ranks = cuda::make_nccl_collectives({gpu.device_index()});
  ASSERT_TRUE(ranks.ok()) << ranks.error().message;
  Collective& rank0 = *ranks.value()[0];
  for (int64_t rows : {1, 19}) {
    const int64_t cols = 111;
    for (int64_t width : {cols, cols - 3}) {  // a whole block, and one whose last columns are padding
      std::vector<float> host(static_cast<size_t>(rows * cols));
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < cols; ++c) host[size_t(i * cols + c)] = float(1000 * i + c);
      Tensor local = gpu.upload_weight(Tensor::from_f32(host, {rows, cols})).value();
      Tensor out = gpu.empty(DType::f32, {rows, width});
      cudaMemset(out.raw(), 0xff, out.nbytes());  // NaN poison
      ASSERT_TRUE(rank0.all_gather(local, out).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = gpu.to_host(out).to_f32_vector();
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < width; ++c)
          ASSERT_EQ(got[size_t(i * width + c)], float(1000 * i + c)) << "rows " << rows << " width " << width
                                                                     << " at " << i << ", " << c;
    }
  }
  Tensor local = gpu.empty(DType::f32, {2, 3});
  Tensor too_wide = gpu.empty(DType::f32, {2, 4});
  EXPECT_EQ(rank0.all_gather(local, too_wide).error().code, ErrorCode::invalid_argument);
}

TEST(NcclCollective, OneRankAllToAllSendsItsRowsToItself) {
  TROUPE_REQUIRE_GPU();
  auto created = cuda::CudaBackend::create(0);
  ASSERT_TRUE(created.ok()) << created.error().message;
  cuda::CudaBackend& gpu = **created;
  auto ranks = cuda::make_nccl_collectives({gpu.device_index()});
  ASSERT_TRUE(ranks.ok()) << ranks.error().message;
  Collective& rank0 = *ranks.value()[0];
  for (int64_t rows : {0, 1, 37}) {
    auto counts = rank0.all_to_all_counts({rows});
    ASSERT_TRUE(counts.ok()) << counts.error().message;
    EXPECT_EQ(counts.value(), (std::vector<int64_t>{rows}));
    const int64_t cols = 72;  // bf16: 144 bytes a row
    Tensor host = Tensor::empty(DType::bf16, {rows, cols});
    for (int64_t i = 0; i < rows * cols; ++i) host.data<uint16_t>()[i] = uint16_t(i * 7 + 1);
    Tensor send = gpu.empty(DType::bf16, {rows, cols}), recv = gpu.empty(DType::bf16, {rows, cols});
    gpu.copy(host, send);
    ASSERT_TRUE(rank0.all_to_all(send, {rows}, recv, counts.value()).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const Tensor got = gpu.to_host(recv);
    for (int64_t i = 0; i < rows * cols; ++i) ASSERT_EQ(got.data<uint16_t>()[i], uint16_t(i * 7 + 1)) << i;
  }
  Tensor send = gpu.empty(DType::f32, {2, 3}), recv = gpu.empty(DType::f32, {3, 3});
  EXPECT_EQ(rank0.all_to_all(send, {2}, recv, {3}).error().code, ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace troupe

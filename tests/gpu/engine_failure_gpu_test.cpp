// The error boundary on the GPU: a real failed cudaMalloc is recorded in CudaBackend::status()
// and thrown as std::bad_alloc (the one exception it throws); the engine over a CudaBackend
// wrapped by the FaultInjectingBackend fails its requests and itself with the op named.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>

#include "backends/build_engine.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "backends/fault_injecting_backend.hpp"
#include "engine/llm_engine.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

TEST(GpuEngineFailure, AFailedCudaMallocIsStickyInStatusAndThrowsBadAlloc) {
  TROUPE_REQUIRE_GPU();
  auto gpu = cuda::CudaBackend::create(0);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  EXPECT_TRUE((*gpu)->status().ok());
  EXPECT_THROW((*gpu)->empty(DType::f32, {int64_t(1) << 40}), std::bad_alloc);  // 4 TiB
  ASSERT_FALSE((*gpu)->status().ok());
  EXPECT_NE((*gpu)->status().error().message.find("cudaMalloc"), std::string::npos);
  EXPECT_NE((*gpu)->take_error(), "");
  EXPECT_FALSE((*gpu)->status().ok());  // take_error does not clear the fault
  // The KV cache reports a failed allocation as a value.
  KvCacheSpec huge;
  huge.num_layers = 1;
  huge.num_blocks = int64_t(1) << 30;
  huge.block_size = 16;
  huge.components = {{"k", 8, 128}};
  auto cache = (*gpu)->create_kv_cache(huge);
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.error().code, ErrorCode::out_of_resources);
}

TEST(GpuEngineFailure, AnInjectedOpFaultFailsTheRequestsAndTheEngine) {
  TROUPE_REQUIRE_GPU();
  auto gpu = cuda::CudaBackend::create(0);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  auto backend = std::make_unique<backends::FaultInjectingBackend>(std::move(gpu.value()));
  backends::FaultInjectingBackend* device = backend.get();
  Config config;
  config.model = troupe_source_dir() + "/tests/fixtures/models/llama-tiny";
  config.num_kv_blocks = 64;
  config.block_size = 4;
  auto engine = backends::build_engine(config, std::move(backend));
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  (*engine)->start();
  device->arm({backends::FaultSpec::Kind::op, 25});

  std::mutex mutex;
  std::condition_variable cv;
  GenerationOutput last;
  GenerationRequest r;
  r.request_id = "a";
  r.prompt_ids = {10, 11, 12};
  r.params.temperature = 0.0;
  r.params.max_tokens = 64;
  r.params.ignore_eos = true;
  ASSERT_TRUE((*engine)->submit(r, [&](const GenerationOutput& out) {
    std::lock_guard lock(mutex);
    if (out.finish_reason != FinishReason::none) last = out;
    cv.notify_all();
  }).ok());
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return last.finish_reason != FinishReason::none; }));
  }
  EXPECT_EQ(last.finish_reason, FinishReason::error);
  EXPECT_NE(last.error_message.find("injected device fault (op 25)"), std::string::npos) << last.error_message;
  EXPECT_FALSE((*engine)->is_ready());
  EXPECT_FALSE((*engine)->submit(r, [](const GenerationOutput&) {}).ok());
  (*engine)->stop();
}

}  // namespace
}  // namespace troupe

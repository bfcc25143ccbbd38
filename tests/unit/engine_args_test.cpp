// EngineArgs: one validate(), and it travels Config -> ModelStageSpec -> the worker's Config whole.
#include <gtest/gtest.h>

#include "pipeline/stage_plan.hpp"
#include "runtime/config.hpp"
#include "runtime/engine_args.hpp"
#include "tests/unit/unusual_engine_args.hpp"

namespace troupe {
namespace {

TEST(EngineArgs, DefaultsAndUnusualValuesAreValid) {
  EXPECT_TRUE(EngineArgs{}.validate().ok());
  EXPECT_TRUE(unusual_engine_args().validate().ok());
  EXPECT_FALSE(unusual_engine_args() == EngineArgs{});
}

TEST(EngineArgs, ValidateNamesTheFlag) {
  EngineArgs args;
  args.block_size = 3;
  EXPECT_NE(args.validate().error().message.find("--block-size"), std::string::npos);
  args = EngineArgs{};
  args.tensor_parallel_size = 0;
  EXPECT_NE(args.validate().error().message.find("--tensor-parallel-size"), std::string::npos);
  args = EngineArgs{};
  args.kv_cache_dtype = "fp9";  // the error lists the choices
  EXPECT_EQ(args.validate().error().message, "--kv-cache-dtype: must be auto, fp8 or fp8_e4m3, got 'fp9'");
  for (const char* ok : {"auto", "fp8", "fp8_e4m3"}) {
    args.kv_cache_dtype = ok;
    EXPECT_TRUE(args.validate().ok()) << ok;
  }
  args = EngineArgs{};
  args.all2all_backend = "deepep_low_latency";
  EXPECT_EQ(args.validate().error().message,
            "--all2all-backend: must be allgather_reducescatter or all_to_all, got 'deepep_low_latency' (vLLM's "
            "pplx, deepep_* and naive kernels are not built)");
  Config config;
  config.dtype = "float8";  // Config::validate checks its engine section too
  EXPECT_NE(config.validate().error().message.find("--dtype"), std::string::npos);
}

TEST(EngineArgs, TravelsThroughModelStageSpecUnchanged) {
  Config head;
  head.engine() = unusual_engine_args();
  head.pipeline_parallel_size = 2;
  head.num_threads = 16;  // machine-local: stays on the head
  auto specs = cluster::plan_stages(head, 5);
  ASSERT_TRUE(specs.ok()) << specs.error().message;
  Config local;
  local.num_threads = 3;
  local.device = "cpu";
  local.enforce_eager = true;
  for (const cluster::ModelStageSpec& spec : *specs) {
    EXPECT_EQ(spec.engine, unusual_engine_args());
    const Config stage = cluster::stage_config(spec, local);
    EXPECT_EQ(stage.engine(), unusual_engine_args());
    EXPECT_EQ(stage.pipeline_parallel_size, 2);
    EXPECT_EQ(stage.num_threads, 3);  // the worker's own
    EXPECT_EQ(stage.device, "cpu");
    EXPECT_TRUE(stage.enforce_eager);
  }
}

TEST(EngineArgs, AWorkersOwnGpuMemoryUtilizationBeatsTheHeads) {
  Config head;
  head.gpu_memory_utilization = 0.5;
  auto specs = cluster::plan_stages(head, 4);
  ASSERT_TRUE(specs.ok()) << specs.error().message;
  Config local;  // no flag: the head's
  EXPECT_EQ(cluster::stage_config((*specs)[0], local).gpu_memory_utilization, 0.5);
  local.worker_gpu_memory_utilization = 0.8;
  const Config stage = cluster::stage_config((*specs)[0], local);
  EXPECT_EQ(stage.gpu_memory_utilization, 0.8);
  EXPECT_TRUE(stage.validate().ok());
}

}  // namespace
}  // namespace troupe

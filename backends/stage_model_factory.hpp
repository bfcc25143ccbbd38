#pragma once
// Builds the model of one pipeline stage on `backend`: with --tensor-parallel-size 1 the plain
// model; with N > 1 a TensorParallelModel whose rank 0 computes on `backend` and ranks 1..N-1 on
// backends of their own (GPUs 1..N-1, summing over NCCL; or CPU backends summing through host
// memory). Errors name the flag: too few GPUs, heads not divisible by N.
#include <memory>

#include "runtime/backend.hpp"
#include "runtime/config.hpp"
#include "runtime/model.hpp"

namespace troupe::backends {

Result<std::unique_ptr<Model>> load_stage_model(const Config& config, Backend& backend, LayerRange range = {});

}  // namespace troupe::backends

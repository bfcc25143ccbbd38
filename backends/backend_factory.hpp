#pragma once
// Picks the backend a process computes on: --device cpu | cuda | auto (a GPU when one is usable).
#include <memory>

#include "runtime/backend.hpp"
#include "runtime/config.hpp"

namespace troupe::backends {

Result<std::unique_ptr<Backend>> make_backend(const Config& config);

// Rank `rank` of `num_ranks` (tensor parallel): GPU `rank` (unavailable when there are fewer
// GPUs than ranks), or a CPU backend with its share of --num-threads.
Result<std::unique_ptr<Backend>> make_backend(const Config& config, int64_t rank, int64_t num_ranks);

}  // namespace troupe::backends

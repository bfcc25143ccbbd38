#pragma once
// Picks the backend a process computes on: --device cpu | cuda | auto (a GPU when one is usable).
#include <memory>

#include "runtime/backend.hpp"
#include "runtime/config.hpp"

namespace troupe::kernels {

Result<std::unique_ptr<Backend>> make_backend(const Config& config);

}  // namespace troupe::kernels

#pragma once
// Fan-out: N replicas of one stage function (one single-stage Pipeline per stage host); inputs
// are dealt round-robin and the replicas work in parallel.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "troupe/export.hpp"
#include "troupe/pipeline.hpp"
#include "troupe/tensor.hpp"

namespace troupe::api {

class TROUPE_API Replicas {
 public:
  // One replica of `function` on each host in `addresses` ("HOST:PORT"; a host may appear twice).
  static Result<Replicas> create(const std::vector<std::string>& addresses, const std::string& function,
                                 const PipelineOptions& options = {});

  Replicas(Replicas&& other) noexcept;
  Replicas& operator=(Replicas&& other) noexcept;
  ~Replicas();

  // Input k goes to replica k % num_replicas(); the replicas run in parallel, each its inputs in
  // order. Returns the outputs in input order, or the first error (naming the input and the
  // replica) once every replica has stopped. `timeout` bounds the whole call.
  Result<std::vector<Tensor>> run_all(const std::vector<Tensor>& inputs, std::chrono::milliseconds timeout);

  // Runs one input on the next replica in round-robin order.
  Result<Tensor> run(const Tensor& input, std::chrono::milliseconds timeout);

  int64_t num_replicas() const;

  struct Impl;

 private:
  explicit Replicas(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace troupe::api

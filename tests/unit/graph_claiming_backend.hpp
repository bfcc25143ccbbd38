#pragma once
// A test Backend that forwards every op to a CpuBackend and claims step graphs: begin_graph
// answers capture for a new key and replay after that, but every op still runs eagerly, so a
// GraphedModel's padded steps can be checked on the CPU. Counts the calls; fail_ends makes that
// many end_graph(true) calls fail.
#include <set>
#include <vector>

#include "tests/unit/cpu_forwarding_backend.hpp"

namespace troupe {

class GraphClaimingBackend final : public CpuForwardingBackend {
 public:
  std::string name() const override { return "graph-claiming cpu"; }

  bool supports_graphs() const override { return true; }
  Result<GraphPhase> begin_graph(int64_t key) override {
    if (open_) return make_error(ErrorCode::unavailable, "nested");
    begins.push_back(key & 0xffffffff);  // the bucket (the model's instance is in the high bits)
    open_ = true;
    return recorded_.insert(key).second ? GraphPhase::capture : GraphPhase::replay;
  }
  void drop_graphs() override {
    recorded_.clear();
    ++drops;
  }
  Status end_graph(bool launch) override {
    open_ = false;
    if (launch && fail_ends > 0) {
      --fail_ends;
      return make_error(ErrorCode::unavailable, "recording refused by the test");
    }
    return Status::success();
  }

  std::vector<int64_t> begins;
  int fail_ends = 0, drops = 0;

 private:
  std::set<int64_t> recorded_;
  bool open_ = false;
};

}  // namespace troupe

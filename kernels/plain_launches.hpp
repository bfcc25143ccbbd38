#pragma once
// While a PlainLaunches lives on a host thread, launch_dependent (dependent_launch.cuh) launches
// plainly there (every dependency full, as TROUPE_NO_PDL=1 does process-wide). For work whose
// predecessor is on another stream: captured into a step graph, a programmatic launch takes
// programmatic edges from every node its stream depends on, the other stream's included, and
// whether a node may have several programmatic neighbours is not something the decode graphs
// rely on (CudaBackend::moe_shared_ahead's side stream, and the combine that joins it).
namespace troupe::kernels {

bool& plain_launches_here();  // this thread's switch (false by default)

// on false: leaves the switch as it is (for a guard that applies only sometimes).
class PlainLaunches {
 public:
  explicit PlainLaunches(bool on = true) : saved_(plain_launches_here()) { plain_launches_here() = saved_ || on; }
  ~PlainLaunches() { plain_launches_here() = saved_; }
  PlainLaunches(const PlainLaunches&) = delete;
  PlainLaunches& operator=(const PlainLaunches&) = delete;

 private:
  bool saved_;
};

}  // namespace troupe::kernels

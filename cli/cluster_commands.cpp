// `troupe head` and `troupe worker`: the actor cluster when troupe_actors is built, else an error.
#include "cli/commands.hpp"

#ifdef TROUPE_HAVE_ACTORS
#include "actors/cluster_main.hpp"
#endif

namespace troupe::cli {

#ifdef TROUPE_HAVE_ACTORS
int run_head(const Config& config) { return run_head_node(config); }
int run_worker(const Config& config) { return run_worker_node(config); }
#else
int run_head(const Config&) {
  return report_error(make_error(ErrorCode::unsupported, "`troupe head`: this build has no actor cluster"));
}
int run_worker(const Config&) {
  return report_error(make_error(ErrorCode::unsupported, "`troupe worker`: this build has no actor cluster"));
}
#endif

}  // namespace troupe::cli

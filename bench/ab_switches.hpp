#pragma once
// In-process A/B runs of the backend's switches (environment variables read at each call, as
// backends/cuda/env_switch.hpp's are): `--ab NAME=VALUE[,NAME=VALUE...]` names the B sides; a
// benchmark times its default, then each B side with its variable set (step graphs recorded again),
// then the default once more, all on the model it loaded once. A load of R1's reduced shape takes
// about 55 s on the H200, a decode measurement a second: one process per side spent the device's
// time on loading. Switches read once per process (TROUPE_SMEM_CARVEOUT, TROUPE_NO_PDL) do not
// belong here.
#include <functional>
#include <string>
#include <vector>

namespace troupe::bench {

struct AbSwitch {
  std::string name, value;
  std::string label() const;  // "NAME_VALUE" lowered, for a metric name's suffix ("_ab_" + label)
};

// "A=1,B=serialized" -> {{A, 1}, {B, serialized}}; an entry without '=' or with an empty name is
// left out and reported through `bad` (when given).
std::vector<AbSwitch> parse_ab_switches(const std::string& text, std::string* bad = nullptr);

// Runs `fn` with the variable set to the switch's value, then puts back what was there.
void with_switch(const AbSwitch& s, const std::function<void()>& fn);

// The B sides after a benchmark's default measurement: for each switch, `drop` (recordings made
// under the default), then `measure("_ab_" + label, "NAME=VALUE")` with it set; then, when there
// were any, `drop` and `measure("_ab_baseline_again", ...)`, the default once more (the run's drift).
void run_ab_sides(const std::vector<AbSwitch>& sides, const std::function<void()>& drop,
                  const std::function<void(const std::string& suffix, const std::string& what)>& measure);

}  // namespace troupe::bench

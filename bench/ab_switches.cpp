#include "bench/ab_switches.hpp"

#include <cctype>
#include <cstdlib>
#include <optional>
#include <sstream>

namespace troupe::bench {

std::string AbSwitch::label() const {
  std::string out = name + "_" + value;
  for (char& c : out) c = std::isalnum(static_cast<unsigned char>(c)) ? char(std::tolower(static_cast<unsigned char>(c))) : '_';
  return out;
}

std::vector<AbSwitch> parse_ab_switches(const std::string& text, std::string* bad) {
  std::vector<AbSwitch> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      if (bad) *bad += (bad->empty() ? "" : ", ") + item;
      continue;
    }
    out.push_back({item.substr(0, eq), item.substr(eq + 1)});
  }
  return out;
}

void with_switch(const AbSwitch& s, const std::function<void()>& fn) {
  const char* before = std::getenv(s.name.c_str());
  const std::optional<std::string> saved = before ? std::optional<std::string>(before) : std::nullopt;
  ::setenv(s.name.c_str(), s.value.c_str(), 1);
  struct Restore {
    const std::string& name;
    const std::optional<std::string>& saved;
    ~Restore() {
      if (saved) {
        ::setenv(name.c_str(), saved->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  } restore{s.name, saved};
  fn();
}

void run_ab_sides(const std::vector<AbSwitch>& sides, const std::function<void()>& drop,
                  const std::function<void(const std::string& suffix, const std::string& what)>& measure) {
  for (const AbSwitch& s : sides)
    with_switch(s, [&] {
      drop();
      measure("_ab_" + s.label(), s.name + "=" + s.value);
    });
  if (sides.empty()) return;
  drop();
  measure("_ab_baseline_again", "the default again, after the B sides");
}

}  // namespace troupe::bench

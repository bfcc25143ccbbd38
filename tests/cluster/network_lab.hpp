#pragma once
// Network namespaces for the partition test: a bridge in the test's own namespace (where the head
// runs) and one namespace per worker, each joined to the bridge by a veth pair, on a /24 of its own:
//
//     root namespace: bridge trp<pid>br 10.250.N.1 (the head listens here)
//        |-- veth trp<pid>h0 <-> trp<pid>n0 in namespace troupe-part-<pid>-0 (10.250.N.2)
//        |-- veth trp<pid>h1 <-> trp<pid>n1 in namespace troupe-part-<pid>-1 (10.250.N.3)
//        ...
//
// A partition cuts one namespace off: iptables drops every packet in and out of its veth (inside
// that namespace only, loopback untouched); where no iptables binary exists (or with
// TROUPE_TEST_PARTITION_BY_LINK_DOWN=1), its veth is set down instead. heal() undoes either. Names
// carry the test's pid, so runs never collide; the destructor deletes the namespaces and the bridge
// on every path, and the constructor first deletes those a killed run left behind (their pid no
// longer alive). Needs root (CAP_NET_ADMIN) and `ip`; when either is missing, `unavailable_reason()`
// says why and the test skips.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace troupe::testing_cluster {

// Runs `command` through sh; returns its exit code and its stdout+stderr.
inline std::pair<int, std::string> shell(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::array<char, 512> buffer{};
  while (std::fgets(buffer.data(), int(buffer.size()), pipe) != nullptr) output += buffer.data();
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class NetworkLab {
 public:
  static constexpr const char* kNamespacePrefix = "troupe-part-";

  explicit NetworkLab(int num_namespaces) : tag_("trp" + std::to_string(::getpid())) {
    if (::geteuid() != 0) {
      unavailable_ = "network namespaces need root (CAP_NET_ADMIN); this test runs as uid " +
                     std::to_string(::geteuid());
      return;
    }
    if (shell("command -v ip").first != 0) {
      unavailable_ = "no `ip` binary (iproute2) on this machine";
      return;
    }
    remove_stale();
    subnet_ = pick_subnet();
    if (subnet_.empty()) {
      unavailable_ = "no free 10.250.N.0/24 subnet for the test's bridge";
      return;
    }
    // TROUPE_TEST_PARTITION_BY_LINK_DOWN=1 takes the fallback even where iptables exists.
    const char* link_down = std::getenv("TROUPE_TEST_PARTITION_BY_LINK_DOWN");
    const bool forced = link_down != nullptr && std::string(link_down) == "1";
    firewall_ = !forced && shell("command -v iptables").first == 0 ? "iptables" : "link down";
    std::string script = "set -e; ip link add " + bridge() + " type bridge; ip addr add " + head_address() +
                         "/24 dev " + bridge() + "; ip link set " + bridge() + " up";
    for (int i = 0; i < num_namespaces; ++i) {
      const std::string ns = namespace_name(i), outer = tag_ + "h" + std::to_string(i),
                        inner = tag_ + "n" + std::to_string(i);
      script += "; ip netns add " + ns + "; ip link add " + outer + " type veth peer name " + inner +
                "; ip link set " + outer + " master " + bridge() + "; ip link set " + outer + " up; ip link set " +
                inner + " netns " + ns + "; ip -n " + ns + " addr add " + address(i) + "/24 dev " + inner +
                "; ip -n " + ns + " link set " + inner + " up; ip -n " + ns + " link set lo up";
      names_.push_back(ns);
    }
    const auto [code, output] = shell(script);
    if (code != 0) unavailable_ = "this machine forbids network namespaces or veth pairs: " + output;
  }
  ~NetworkLab() { remove(tag_); }
  NetworkLab(const NetworkLab&) = delete;
  NetworkLab& operator=(const NetworkLab&) = delete;

  // Empty when the lab stands; else why it cannot (the test skips with it).
  const std::string& unavailable_reason() const { return unavailable_; }
  // "iptables" or "link down": how partition() cuts a namespace off.
  const std::string& firewall() const { return firewall_; }
  std::string head_address() const { return subnet_ + ".1"; }
  std::string address(int i) const { return subnet_ + "." + std::to_string(i + 2); }
  std::string namespace_name(int i) const { return kNamespacePrefix + std::to_string(::getpid()) + "-" + std::to_string(i); }
  // The command prefix that runs a program inside namespace i.
  std::vector<std::string> exec_in(int i) const { return {"/usr/bin/env", "ip", "netns", "exec", namespace_name(i)}; }

  // The namespace (index) process `pid` lives in, or -1 when it is in none of the lab's.
  int namespace_of(pid_t pid) const {
    struct stat process{};
    if (::stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &process) != 0) return -1;
    for (size_t i = 0; i < names_.size(); ++i) {
      struct stat named{};
      if (::stat(("/run/netns/" + names_[i]).c_str(), &named) == 0 && named.st_ino == process.st_ino) return int(i);
    }
    return -1;
  }

  // Cuts namespace i off from everything but its own loopback; returns the command's error or "".
  std::string partition(int i) const {
    const std::string ns = namespace_name(i), inner = tag_ + "n" + std::to_string(i);
    const std::string command =
        firewall_ == "iptables"
            ? "ip netns exec " + ns + " iptables -A INPUT -i " + inner + " -j DROP && ip netns exec " + ns +
                  " iptables -A OUTPUT -o " + inner + " -j DROP"
            : "ip -n " + ns + " link set " + inner + " down";
    const auto [code, output] = shell(command);
    return code == 0 ? "" : command + ": " + output;
  }
  std::string heal(int i) const {
    const std::string ns = namespace_name(i), inner = tag_ + "n" + std::to_string(i);
    const std::string command = firewall_ == "iptables" ? "ip netns exec " + ns + " iptables -F"
                                                        : "ip -n " + ns + " link set " + inner + " up";
    const auto [code, output] = shell(command);
    return code == 0 ? "" : command + ": " + output;
  }

 private:
  std::string bridge() const { return tag_ + "br"; }

  // Deletes this tag's veth pairs (from the root end: a namespace lingers while the kernel still
  // holds a socket of it, and its veths with it), namespaces and bridge; errors are ignored.
  static void remove(const std::string& tag) {
    const std::string pid = tag.substr(3);
    shell("for link in $(ip -o link show | cut -d: -f2 | cut -d@ -f1 | grep -E '^ *" + tag +
          "(h[0-9]+|br)$'); do ip link del $link; done; for ns in $(ip netns list | cut -d' ' -f1 | grep '^" +
          std::string(kNamespacePrefix) + pid + "-'); do ip netns del $ns; done");
  }

  // What earlier runs whose process is gone (a crash, a ctest timeout) left: namespaces
  // troupe-part-<pid>-*, links trp<pid>*.
  static void remove_stale() {
    const auto [code, listing] =
        shell("{ ip netns list | cut -d' ' -f1 | grep '^" + std::string(kNamespacePrefix) +
              "' | cut -d- -f3; ip -o link show | cut -d: -f2 | cut -d@ -f1 | grep -o '^ *trp[0-9]*' | "
              "tr -d ' trp'; } | sort -u");
    if (code != 0) return;
    size_t at = 0;
    while (at < listing.size()) {
      const size_t end = listing.find('\n', at);
      const std::string pid = listing.substr(at, end - at);
      at = end == std::string::npos ? listing.size() : end + 1;
      if (pid.empty() || pid == std::to_string(::getpid()) || std::filesystem::exists("/proc/" + pid)) continue;
      remove("trp" + pid);
    }
  }

  // 10.250.N with no address of this machine in it.
  static std::string pick_subnet() {
    for (int attempt = 0; attempt < 250; ++attempt) {
      const std::string subnet = "10.250." + std::to_string((::getpid() + attempt) % 250);
      if (shell("ip -o addr show to " + subnet + ".0/24 | grep -q .").first != 0) return subnet;
    }
    return "";
  }

  std::string tag_;
  std::string subnet_;
  std::string firewall_;
  std::string unavailable_;
  std::vector<std::string> names_;
};

}  // namespace troupe::testing_cluster

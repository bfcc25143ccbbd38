#include "cluster/process_supervisor.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <thread>

#include "runtime/logging.hpp"

namespace troupe::cluster {
namespace {

std::atomic<pid_t> g_child{0};
std::atomic<int> g_stop_signal{0};

void forward_signal(int signal) {
  g_stop_signal.store(signal);
  const pid_t child = g_child.load();
  if (child > 0) ::kill(child, signal);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Sleeps `delay` in small steps; returns false when a stop signal arrived meanwhile.
bool sleep_unless_stopped(std::chrono::milliseconds delay) {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (std::chrono::steady_clock::now() < until) {
    if (g_stop_signal.load() != 0) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return g_stop_signal.load() == 0;
}

}  // namespace

SupervisorReport supervise_process(const std::function<int()>& child_main, const SupervisorPolicy& policy) {
  auto logger = log::get("supervisor");
  g_stop_signal.store(0);
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_term {}, old_int {};
  sigaction(SIGTERM, &action, &old_term);
  sigaction(SIGINT, &action, &old_int);

  Backoff backoff(policy.backoff);
  SupervisorReport report;
  const pid_t parent = ::getpid();
  for (;;) {
    const auto started = std::chrono::steady_clock::now();
    const pid_t child = ::fork();
    if (child < 0) {
      logger->error("fork failed: errno {}", errno);
      report.exit_code = 1;
      break;
    }
    if (child == 0) {
      sigaction(SIGTERM, &old_term, nullptr);
      sigaction(SIGINT, &old_int, nullptr);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
      ::_exit(child_main());
    }
    g_child.store(child);
    if (g_stop_signal.load() != 0) ::kill(child, g_stop_signal.load());  // stop raced with fork
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    g_child.store(0);
    report.exit_code = exit_code_of(status);
    const bool crashed = WIFSIGNALED(status) || (report.exit_code != 0 && report.exit_code != kPermanentExitCode);
    if (g_stop_signal.load() != 0 || !crashed) {
      logger->info("worker process {} exited with {}", child, report.exit_code);
      break;
    }
    if (policy.max_restarts >= 0 && report.num_restarts >= policy.max_restarts) {
      logger->error("worker process {} exited with {}; {} restarts spent, giving up", child, report.exit_code,
                    report.num_restarts);
      break;
    }
    if (std::chrono::steady_clock::now() - started >= policy.stable_after) backoff.reset();
    const auto delay = backoff.next();
    logger->warn("worker process {} crashed ({}{}); restarting in {} ms", child,
                 WIFSIGNALED(status) ? "signal " : "exit code ",
                 WIFSIGNALED(status) ? WTERMSIG(status) : report.exit_code, delay.count());
    if (!sleep_unless_stopped(delay)) break;
    ++report.num_restarts;
  }
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  return report;
}

}  // namespace troupe::cluster

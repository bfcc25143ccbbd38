#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <string>

#include "cluster/process_supervisor.hpp"

namespace troupe::cluster {
namespace {

using std::chrono::milliseconds;

SupervisorPolicy fast_policy(int64_t max_restarts) {
  SupervisorPolicy policy;
  policy.backoff = BackoffPolicy{milliseconds(10), milliseconds(40), 2.0, 0.0};
  policy.max_restarts = max_restarts;
  return policy;
}

// The child counts its runs in a file (it is a separate process: no shared memory).
struct RunCounter {
  std::string path = testing::TempDir() + "/troupe_supervisor_" + std::to_string(::getpid());
  RunCounter() { std::remove(path.c_str()); }
  ~RunCounter() { std::remove(path.c_str()); }
  int bump() const {
    int runs = count() + 1;
    std::ofstream(path) << runs;
    return runs;
  }
  int count() const {
    int runs = 0;
    std::ifstream(path) >> runs;
    return runs;
  }
};

TEST(ProcessSupervisor, RestartsACrashingChildUntilItSucceeds) {
  RunCounter counter;
  auto report = supervise_process(
      [&] {
        const int run = counter.bump();
        if (run == 1) ::raise(SIGKILL);  // a crash by signal
        if (run == 2) return 7;          // a crash by exit code
        return 0;
      },
      fast_policy(-1));
  EXPECT_EQ(report.exit_code, 0);
  EXPECT_EQ(report.num_restarts, 2);
  EXPECT_EQ(counter.count(), 3);
}

TEST(ProcessSupervisor, PermanentErrorsAreNotRestarted) {
  RunCounter counter;
  auto report = supervise_process([&] { counter.bump(); return kPermanentExitCode; }, fast_policy(-1));
  EXPECT_EQ(report.exit_code, kPermanentExitCode);
  EXPECT_EQ(report.num_restarts, 0);
  EXPECT_EQ(counter.count(), 1);
}

TEST(ProcessSupervisor, GivesUpAfterMaxRestarts) {
  RunCounter counter;
  auto report = supervise_process([&] { counter.bump(); return 5; }, fast_policy(3));
  EXPECT_EQ(report.exit_code, 5);
  EXPECT_EQ(report.num_restarts, 3);
  EXPECT_EQ(counter.count(), 4);
}

TEST(ProcessSupervisor, ForwardsSigtermToTheChildAndStops) {
  // Run the supervisor itself in a forked process so the test can signal it.
  const std::string ready = testing::TempDir() + "/troupe_supervisor_ready_" + std::to_string(::getpid());
  std::remove(ready.c_str());
  const pid_t supervisor = ::fork();
  ASSERT_GE(supervisor, 0);
  if (supervisor == 0) {
    auto report = supervise_process(
        [&] {
          std::ofstream(ready) << ::getpid();
          for (;;) ::pause();  // dies by the forwarded SIGTERM
          return 0;
        },
        fast_policy(-1));
    ::_exit(report.exit_code == 128 + SIGTERM && report.num_restarts == 0 ? 0 : 1);
  }
  pid_t child = 0;
  for (int i = 0; i < 500 && child == 0; ++i) {
    std::ifstream(ready) >> child;
    if (child == 0) ::usleep(10 * 1000);
  }
  ASSERT_GT(child, 0) << "the supervised child never started";
  ASSERT_EQ(::kill(supervisor, SIGTERM), 0);
  int status = 0;
  pid_t waited = 0;
  for (int i = 0; i < 500 && waited == 0; ++i) {
    waited = ::waitpid(supervisor, &status, WNOHANG);
    if (waited == 0) ::usleep(10 * 1000);
  }
  if (waited == 0) ::kill(supervisor, SIGKILL), ::waitpid(supervisor, &status, 0);
  ASSERT_EQ(waited, supervisor) << "the supervisor did not stop within 5 s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_NE(::kill(child, 0), 0) << "the child outlived its supervisor";
  std::remove(ready.c_str());
}

}  // namespace
}  // namespace troupe::cluster

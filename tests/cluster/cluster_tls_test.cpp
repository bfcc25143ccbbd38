// Mutual TLS on the control plane (--cluster-ssl-certfile/-keyfile/-ca-certs, CAF's openssl
// module). A head and a worker with certificates signed by one CA form a group and serve; a
// plaintext worker and one whose certificate another CA signed never join, and their failed
// handshakes leave the joined worker's group at the epoch it served at (CAF 0.17 used to drop it: see
// actors/openssl_error_queue.cpp). A partial set of flags is refused, naming the missing one.
// Certificates are made by the `openssl` CLI at test time (EC keys: quick).
#include <httplib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "tests/cluster/cluster_harness.hpp"

namespace troupe::testing_cluster {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kToken = "cluster-tls-token";
const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

// A CA that signed the head's and the worker's certificates, and an intruder's self-signed one.
class ClusterCertificates {
 public:
  ClusterCertificates() : dir_(fs::path(::testing::TempDir()) / ("troupe-cluster-tls-" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string script = "cd " + dir_.string() + " && openssl req -x509 " + key +
                         " -keyout ca.key -out ca.crt -days 1 -subj /CN=troupe-cluster-ca";
    for (const char* node : {"head", "worker"})
      script += std::string(" && openssl req ") + key + " -keyout " + node + ".key -out " + node + ".csr -subj /CN=" +
                node + " && openssl x509 -req -in " + node + ".csr -CA ca.crt -CAkey ca.key -CAcreateserial -out " +
                node + ".crt -days 1";
    script += " && openssl req -x509 " + key + " -keyout intruder.key -out intruder.crt -days 1 -subj /CN=intruder";
    ok_ = std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0;
  }
  ~ClusterCertificates() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  bool ok() const { return ok_; }
  // The three flags for `node`'s certificate, trusting `ca` ("ca" or "intruder").
  std::vector<std::string> flags(const std::string& node, const std::string& ca = "ca") const {
    return {"--cluster-ssl-certfile", path(node + ".crt"), "--cluster-ssl-keyfile", path(node + ".key"),
            "--cluster-ssl-ca-certs", path(ca + ".crt")};
  }

 private:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
  bool ok_ = false;
};

int completion_status(int http_port) {
  httplib::Client client("127.0.0.1", http_port);
  client.set_read_timeout(30, 0);
  auto res = client.Post("/v1/completions", R"({"model":"llama-tiny","prompt":"hi","max_tokens":4})",
                         "application/json");
  return res ? res->status : -1;
}

TEST(ClusterTls, SignedNodesServeAndOthersNeverJoinNorDisturbThem) {
  ClusterCertificates certs;
  ASSERT_TRUE(certs.ok()) << "the openssl CLI could not make the test certificates";
  Cluster cluster("cluster_tls");
  const int http = free_port();
  std::vector<std::string> head_flags = {"--num-threads", "1", "--num-kv-blocks", "64", "--served-model-name", "llama-tiny"};
  for (auto& flag : certs.flags("head")) head_flags.push_back(flag);
  cluster.start_serving_head(kModel, 1, 1, http, kToken, head_flags);
  std::vector<std::string> worker_flags = {"--num-threads", "1"};
  for (auto& flag : certs.flags("worker")) worker_flags.push_back(flag);
  cluster.start_worker("worker", kToken, true, worker_flags);
  ASSERT_TRUE(wait_healthy(http, milliseconds(60000))) << cluster.log("head") << cluster.log("worker");
  EXPECT_NE(cluster.log("head").find("(mutual TLS)"), std::string::npos);
  EXPECT_EQ(completion_status(http), 200);
  // The epoch the group serves at, any (a group the supervisor restarted while starting is ready
  // too), and how much the head had logged by then: the intruders must disturb neither.
  uint64_t epoch = 0;
  ASSERT_TRUE(wait_until([&] { return (epoch = group_ready_epoch(cluster.status(), 0)) > 0; }, milliseconds(10000)))
      << cluster.status().dump() << cluster.log("head");
  const size_t head_logged = cluster.log("head").size();

  // Both intruders keep retrying for a few seconds (several failed handshakes each).
  cluster.start_worker("plaintext", kToken, false, {"--num-threads", "1"});
  std::vector<std::string> intruder_flags = {"--num-threads", "1"};
  for (auto& flag : certs.flags("intruder", "intruder")) intruder_flags.push_back(flag);
  cluster.start_worker("intruder", kToken, false, intruder_flags);
  std::this_thread::sleep_for(milliseconds(4000));

  const json status = cluster.status();
  ASSERT_TRUE(status.is_object()) << cluster.log("head");
  EXPECT_EQ(num_active(status), 1) << status.dump();
  EXPECT_TRUE(group_is(status, 0, "ready", epoch)) << "a failed handshake disturbed the joined worker: "
                                                     << status.dump() << cluster.log("head");
  EXPECT_EQ(cluster.log("head").find("lost", head_logged), std::string::npos) << cluster.log("head");
  EXPECT_EQ(cluster.log("plaintext").find("joined as node"), std::string::npos);
  EXPECT_EQ(cluster.log("intruder").find("joined as node"), std::string::npos);
  EXPECT_NE(cluster.log("plaintext").find("not reachable yet"), std::string::npos) << cluster.log("plaintext");
  EXPECT_EQ(completion_status(http), 200);
}

TEST(ClusterTls, APartialSetOfFlagsIsRefusedNamingTheMissingOne) {
  ClusterCertificates certs;
  ASSERT_TRUE(certs.ok()) << "the openssl CLI could not make the test certificates";
  Cluster cluster("cluster_tls_flags");
  std::vector<std::string> flags = certs.flags("worker");
  flags.resize(4);  // certificate and key, no CA
  const pid_t worker = cluster.start_worker("worker", kToken, false, flags);
  EXPECT_EQ(Cluster::wait_exit(worker, milliseconds(10000)), 2) << cluster.log("worker");
  EXPECT_NE(cluster.log("worker").find("--cluster-ssl-ca-certs is missing"), std::string::npos)
      << cluster.log("worker");

  const pid_t head = cluster.start("head", {"head", "--port", std::to_string(cluster.port()),
                                            "--cluster-ssl-certfile", "/nonexistent/head.crt", "--cluster-ssl-keyfile",
                                            "/nonexistent/head.key", "--cluster-ssl-ca-certs", "/nonexistent/ca.crt"},
                                   kToken);
  EXPECT_EQ(Cluster::wait_exit(head, milliseconds(10000)), 2) << cluster.log("head");
  EXPECT_NE(cluster.log("head").find("--cluster-ssl-certfile: cannot read /nonexistent/head.crt"), std::string::npos)
      << cluster.log("head");
}

}  // namespace
}  // namespace troupe::testing_cluster

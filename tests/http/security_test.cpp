// TLS (--ssl-keyfile/--ssl-certfile, --ssl-ca-certs for client certificates), CORS
// (--allowed-origins) and --root-path, over real sockets. Certificates are made by the `openssl`
// CLI in a temporary folder at test time (EC keys: quick).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/http/test_server.hpp"

namespace troupe::testing {
namespace {

namespace fs = std::filesystem;

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, both signed by it,
// and a second CA that signed nothing of these.
class Certificates {
 public:
  Certificates() {
    dir_ = fs::temp_directory_path() / ("troupe-tls-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    const std::string d = dir_.string();
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script =
        "cd " + d + " && " +
        "openssl req -x509 " + key + " -keyout ca.key -out ca.crt -days 1 -subj /CN=troupe-test-ca && " +
        "openssl req -x509 " + key + " -keyout other-ca.key -out other-ca.crt -days 1 -subj /CN=other-ca && " +
        "openssl req " + key + " -keyout server.key -out server.csr -subj /CN=localhost && " +
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 "
        "-extfile server.ext && " +
        "openssl req " + key + " -keyout client.key -out client.csr -subj /CN=troupe-client && " +
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 1";
    ok_ = std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0;
  }
  ~Certificates() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  bool ok() const { return ok_; }
  std::string path(const char* name) const { return (dir_ / name).string(); }

 private:
  fs::path dir_;
  bool ok_ = false;
};

// A troupe server whose config the test chooses (TLS or not), on an ephemeral port.
class ConfiguredServer {
 public:
  explicit ConfiguredServer(Config config) : engine_(FakeEngineOptions{}), server_(config, &engine_, std::make_shared<FakeTextCodec>()) {
    bound_ = server_.bind();
    if (bound_.ok()) thread_ = std::thread([this] { server_.listen(); });
    // NOTE: wait for the accept loop so stop() cannot miss it.
    for (int i = 0; i < 200 && bound_.ok() && !server_.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~ConfiguredServer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  const Status& bound() const { return bound_; }
  int port() const { return server_.port(); }

 private:
  FakeEngine engine_;
  http::Server server_;
  Status bound_ = Status::success();
  std::thread thread_;
};

Config tls_config(const Certificates& certs) {
  Config config = test_config();
  config.ssl_keyfile = certs.path("server.key");
  config.ssl_certfile = certs.path("server.crt");
  return config;
}

std::unique_ptr<httplib::SSLClient> tls_client(int port, const std::string& ca = "", const std::string& cert = "",
                                               const std::string& key = "") {
  auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port, cert, key);
  c->set_connection_timeout(5, 0);
  c->set_read_timeout(5, 0);
  if (!ca.empty()) c->set_ca_cert_path(ca.c_str());
  c->enable_server_certificate_verification(true);
  return c;
}

const std::string kChat = R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":3})";

TEST(HttpTls, ClientTrustingTheCaIsServedOthersAndPlaintextAreRefused) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << "the openssl CLI could not make the test certificates";
  ConfiguredServer server(tls_config(certs));
  ASSERT_TRUE(server.bound().ok()) << server.bound().error().message;

  auto trusted = tls_client(server.port(), certs.path("ca.crt"));
  auto res = trusted->Post("/v1/chat/completions", kChat, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << res->body;

  // A client that trusts another CA refuses the server's certificate.
  auto untrusting = tls_client(server.port(), certs.path("other-ca.crt"));
  auto refused = untrusting->Get("/health");
  EXPECT_FALSE(refused);

  // Plain HTTP to the TLS port fails at once (no hang, no crash), and the server serves on.
  httplib::Client plain("127.0.0.1", server.port());
  plain.set_read_timeout(3, 0);
  const auto started = std::chrono::steady_clock::now();
  auto plain_res = plain.Get("/health");
  EXPECT_TRUE(!plain_res || plain_res->status >= 400);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
  auto again = trusted->Get("/health");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST(HttpTls, CaCertsRequireAClientCertificate) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << "the openssl CLI could not make the test certificates";
  Config config = tls_config(certs);
  config.ssl_ca_certs = certs.path("ca.crt");
  ConfiguredServer server(config);
  ASSERT_TRUE(server.bound().ok()) << server.bound().error().message;

  auto anonymous = tls_client(server.port(), certs.path("ca.crt"));
  auto refused = anonymous->Get("/health");
  EXPECT_TRUE(!refused || refused->status != 200);

  auto with_cert = tls_client(server.port(), certs.path("ca.crt"), certs.path("client.crt"), certs.path("client.key"));
  auto res = with_cert->Get("/health");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

TEST(HttpTls, UnusableFilesFailBindNamingThem) {
  Config config = test_config();
  config.ssl_keyfile = "/nonexistent/server.key";
  config.ssl_certfile = "/nonexistent/server.crt";
  ConfiguredServer server(config);
  ASSERT_FALSE(server.bound().ok());
  EXPECT_NE(server.bound().error().message.find("/nonexistent/server.crt"), std::string::npos);
}

TEST(HttpCors, PreflightAndAnswersCarryTheHeadersForAllowedOriginsOnly) {
  Config config = test_config();
  config.api_key = "sk-test";
  config.allowed_origins = "https://app.example, https://other.example";
  TestServer server({}, config);
  httplib::Client c("127.0.0.1", server.port());
  auto pre = c.Options("/v1/chat/completions", {{"Origin", "https://app.example"},
                                                {"Access-Control-Request-Method", "POST"},
                                                {"Access-Control-Request-Headers", "authorization,content-type"}});
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);  // no API key on a preflight
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Headers"), "authorization,content-type");

  auto denied = c.Options("/v1/chat/completions", {{"Origin", "https://evil.example"},
                                                   {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 400);
  EXPECT_FALSE(denied->has_header("Access-Control-Allow-Origin"));

  c.set_bearer_token_auth("sk-test");
  auto res = c.Post("/v1/chat/completions", {{"Origin", "https://other.example"}}, kChat, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Access-Control-Allow-Origin"), "https://other.example");
  auto foreign = c.Get("/v1/models", {{"Origin", "https://evil.example"}});
  ASSERT_TRUE(foreign);
  EXPECT_FALSE(foreign->has_header("Access-Control-Allow-Origin"));
}

TEST(HttpCors, StarAllowsAnyOriginAndNoFlagAnswersNoPreflight) {
  Config config = test_config();
  config.allowed_origins = "*";
  {
    TestServer server({}, config);
    httplib::Client c("127.0.0.1", server.port());
    auto pre = c.Options("/v1/models", {{"Origin", "http://x.example"}, {"Access-Control-Request-Method", "GET"}});
    ASSERT_TRUE(pre);
    EXPECT_EQ(pre->status, 204);
    EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "*");
  }
  TestServer plain;
  httplib::Client c("127.0.0.1", plain.port());
  auto res = c.Get("/health", {{"Origin", "http://x.example"}});
  ASSERT_TRUE(res);
  EXPECT_FALSE(res->has_header("Access-Control-Allow-Origin"));
}

TEST(HttpRootPath, RoutesAnswerWithAndWithoutThePrefix) {
  Config config = test_config();
  config.root_path = "/llm";
  TestServer server({}, config);
  auto c = server.client();
  for (const char* path : {"/health", "/llm/health", "/llm/v1/models", "/v1/models", "/llm/metrics"}) {
    auto res = c.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
  }
  EXPECT_EQ(post_json(c, "/llm/v1/chat/completions", kChat).status, 200);
  auto other = c.Get("/other/health");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
}

TEST(HttpSecurityConfig, ValidateNamesTheFlag) {
  ASSERT_TRUE(Config{}.validate().ok()) << Config{}.validate().error().message;
  Config config;
  config.ssl_keyfile = "k.pem";
  EXPECT_NE(config.validate().error().message.find("ssl-certfile"), std::string::npos);
  config = Config{};
  config.ssl_ca_certs = "ca.pem";
  EXPECT_NE(config.validate().error().message.find("ssl-ca-certs"), std::string::npos);
  config = Config{};
  config.root_path = "llm/";
  EXPECT_NE(config.validate().error().message.find("root-path"), std::string::npos);
  config.root_path = "/llm";
  EXPECT_TRUE(config.validate().ok());
}

}  // namespace
}  // namespace troupe::testing

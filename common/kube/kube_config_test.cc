#include "common/kube/kube_config.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

std::string MakeTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr ? base : "/tmp", "/kubecfgXXXXXX");
  char* dir = mkdtemp(&tmpl[0]);
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

constexpr char kTwoContexts[] = R"yaml(
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: CA_B64
- name: dev-cluster
  cluster:
    server: https://dev.example:443
    certificate-authority: certs/ca.pem
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    client-certificate-data: CERT_B64
    client-key-data: KEY_B64
- name: dev
  user:
    client-certificate: certs/dev.crt
    client-key: /abs/dev.key
    tokenFile: tokens/dev
contexts:
- name: prod
  context:
    cluster: prod-cluster
    user: admin
- name: dev
  context:
    cluster: dev-cluster
    user: dev
    namespace: default
)yaml";

std::string TwoContexts() {
  return absl::StrReplaceAll(
      kTwoContexts, {{"CA_B64", absl::Base64Escape("-----CA PEM-----\n")},
                     {"CERT_B64", absl::Base64Escape("-----CERT PEM-----\n")},
                     {"KEY_B64", absl::Base64Escape("-----KEY PEM-----\n")}});
}

TEST(ParseKubeconfigTest, CurrentContextWithInlineData) {
  absl::StatusOr<KubeConfig> config =
      ParseKubeconfig(TwoContexts(), "/etc/kube");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://10.0.0.1:6443");  // trailing '/' dropped
  EXPECT_EQ(config->ca_pem, "-----CA PEM-----\n");
  EXPECT_EQ(config->ca_file, "");
  EXPECT_EQ(config->client_cert_pem, "-----CERT PEM-----\n");
  EXPECT_EQ(config->client_key_pem, "-----KEY PEM-----\n");
  EXPECT_EQ(config->token, "");
  EXPECT_FALSE(config->insecure_skip_tls_verify);
}

TEST(ParseKubeconfigTest, NamedContextWithFilesRelativeToKubeconfigDir) {
  absl::StatusOr<KubeConfig> config =
      ParseKubeconfig(TwoContexts(), "/etc/kube/", "dev");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://dev.example:443");
  EXPECT_EQ(config->ca_file, "/etc/kube/certs/ca.pem");
  EXPECT_EQ(config->client_cert_file, "/etc/kube/certs/dev.crt");
  EXPECT_EQ(config->client_key_file, "/abs/dev.key");  // absolute stays
  EXPECT_EQ(config->token_file, "/etc/kube/tokens/dev");
  EXPECT_TRUE(config->insecure_skip_tls_verify);
}

// Every trailing '/' goes: the client appends "/api/...", and a server
// "https://h:6443//" used to keep one ("https://h:6443/"), which the header
// promises never happens (found by kube_config_fuzz). Nothing left of a
// server but its scheme is not a URL.
TEST(ParseKubeconfigTest, AllTrailingSlashesDropped) {
  const std::string yaml = R"(
current-context: c
contexts: [{name: c, context: {cluster: k}}]
clusters: [{name: k, cluster: {server: "https://10.0.0.1:6443//"}}]
)";
  absl::StatusOr<KubeConfig> config = ParseKubeconfig(yaml, "/etc/kube");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://10.0.0.1:6443");

  config = ParseKubeconfig(
      R"(
current-context: c
contexts: [{name: c, context: {cluster: k}}]
clusters: [{name: k, cluster: {server: "https:///"}}]
)",
      "/etc/kube");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
      << (config.ok() ? config->server : "");
}

TEST(LoadKubeconfigTest, ResolvesAgainstTheFilesDirectory) {
  std::string dir = MakeTempDir();
  std::string path = dir + "/config";
  WriteFile(path, TwoContexts());
  absl::StatusOr<KubeConfig> config = LoadKubeconfig(path, "dev");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca_file, dir + "/certs/ca.pem");
  EXPECT_EQ(config->token_file, dir + "/tokens/dev");
}

TEST(LoadKubeconfigTest, MissingFileNamesThePath) {
  absl::StatusOr<KubeConfig> config = LoadKubeconfig("/nonexistent/kubeconfig");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("/nonexistent/kubeconfig"),
            std::string::npos);
}

TEST(ParseKubeconfigTest, TokenUser) {
  absl::StatusOr<KubeConfig> config = ParseKubeconfig(R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "http://127.0.0.1:8080"}}]
users: [{name: u, user: {token: abc.def}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)yaml",
                                                      "/x");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "http://127.0.0.1:8080");
  EXPECT_EQ(config->token, "abc.def");
}

// Each broken kubeconfig must fail with a message naming what is missing.
TEST(ParseKubeconfigTest, MissingPiecesAreNamed) {
  const std::map<std::string, std::string> cases = {
      {"current-context", R"yaml(
clusters: [{name: k, cluster: {server: "https://a"}}]
contexts: [{name: c, context: {cluster: k}}]
)yaml"},
      {"context \"c\" not found", R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "https://a"}}]
)yaml"},
      {"cluster \"k\" not found", R"yaml(
current-context: c
contexts: [{name: c, context: {cluster: k}}]
)yaml"},
      {"has no server", R"yaml(
current-context: c
clusters: [{name: k, cluster: {}}]
contexts: [{name: c, context: {cluster: k}}]
)yaml"},
      {"user \"u\" not found", R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "https://a"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)yaml"},
      {"no client-key", R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "https://a"}}]
users: [{name: u, user: {client-certificate: a.crt}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)yaml"},
      {"exec", R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "https://a"}}]
users: [{name: u, user: {exec: {command: aws}}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)yaml"},
      {"not valid base64", R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "https://a", certificate-authority-data: "!!!"}}]
contexts: [{name: c, context: {cluster: k}}]
)yaml"},
      {"not an http(s) URL", R"yaml(
current-context: c
clusters: [{name: k, cluster: {server: "ftp://a"}}]
contexts: [{name: c, context: {cluster: k}}]
)yaml"},
  };
  for (const auto& [expected, yaml] : cases) {
    absl::StatusOr<KubeConfig> config = ParseKubeconfig(yaml, "/x");
    ASSERT_FALSE(config.ok()) << expected;
    EXPECT_NE(config.status().message().find(expected), std::string::npos)
        << "want \"" << expected << "\" in: " << config.status();
  }
}

TEST(ParseKubeconfigTest, GarbageIsAnErrorNotACrash) {
  for (const char* yaml :
       {"", "[", "{a: [}", "just a string", "- 1\n- 2\n",
        "current-context: [1, 2]\n", "current-context: c\ncontexts: {c: 1}\n",
        "current-context: c\ncontexts: [{name: c, context: {cluster: {a: "
        "1}}}]\n",
        "\t\tkey: : :\n", "current-context: c\nclusters: 7\n"}) {
    absl::StatusOr<KubeConfig> config = ParseKubeconfig(yaml, "/x");
    EXPECT_FALSE(config.ok()) << yaml;
  }
}

TEST(InClusterConfigTest, ReadsEnvAndServiceAccountFiles) {
  std::string dir = MakeTempDir();
  WriteFile(dir + "/token", "tok\n");
  WriteFile(dir + "/ca.crt", "-----CA-----\n");
  std::map<std::string, std::string> env = {
      {"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
      {"KUBERNETES_SERVICE_PORT", "443"}};
  auto lookup = [&](const std::string& name) -> absl::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return absl::nullopt;
    return it->second;
  };
  absl::StatusOr<KubeConfig> config = InClusterConfig(lookup, dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://10.96.0.1:443");
  EXPECT_EQ(config->token_file, dir + "/token");
  EXPECT_EQ(config->ca_file, dir + "/ca.crt");

  env["KUBERNETES_SERVICE_HOST"] = "fd00:10:96::1";
  config = InClusterConfig(lookup, dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://[fd00:10:96::1]:443");

  env["KUBERNETES_SERVICE_HOST"] = "[fd00::1]";
  config = InClusterConfig(lookup, dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://[fd00::1]:443");

  env["KUBERNETES_SERVICE_PORT"] = "https";
  EXPECT_FALSE(InClusterConfig(lookup, dir).ok());

  env.erase("KUBERNETES_SERVICE_PORT");
  config = InClusterConfig(lookup, dir);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(InClusterConfigTest, MissingTokenOrCaIsAnError) {
  std::string dir = MakeTempDir();
  auto lookup = [](const std::string& name) -> absl::optional<std::string> {
    if (name == "KUBERNETES_SERVICE_HOST") return std::string("10.0.0.1");
    if (name == "KUBERNETES_SERVICE_PORT") return std::string("6443");
    return absl::nullopt;
  };
  absl::StatusOr<KubeConfig> config = InClusterConfig(lookup, dir);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("token"), std::string::npos)
      << config.status();

  WriteFile(dir + "/token", "tok");
  config = InClusterConfig(lookup, dir);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("ca.crt"), std::string::npos)
      << config.status();
}

}  // namespace
}  // namespace kube
}  // namespace pc

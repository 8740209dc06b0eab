// Where and how to reach a Kubernetes API server: loaded from a kubeconfig
// file or from the in-cluster service-account environment. Plain data and free
// functions; thread-compatible (the loaders share no state).
#ifndef COMMON_KUBE_KUBE_CONFIG_H_
#define COMMON_KUBE_KUBE_CONFIG_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace pc {
namespace kube {

// For each of CA / client certificate / client key, at most one of *_file and
// *_pem is set. `token_file` (re-read by HttpClient) takes precedence over
// `token` when both are set.
struct KubeConfig {
  std::string server;  // "https://host:port[/prefix]", no trailing '/'
  std::string ca_file;
  std::string ca_pem;
  std::string client_cert_file;
  std::string client_cert_pem;
  std::string client_key_file;
  std::string client_key_pem;
  std::string token;
  std::string token_file;
  bool insecure_skip_tls_verify = false;
};

// Parses kubeconfig YAML. `context` empty means the file's current-context.
// Relative file paths are resolved against `base_dir` (the kubeconfig's
// directory). Supports certificate-authority[-data], client-certificate[-data],
// client-key[-data], token, tokenFile, insecure-skip-tls-verify; exec and
// auth-provider credentials are rejected with UnimplementedError when the user
// has no token or client certificate.
absl::StatusOr<KubeConfig> ParseKubeconfig(absl::string_view yaml,
                                           absl::string_view base_dir,
                                           absl::string_view context = "");

// Reads `path` and parses it with ParseKubeconfig, relative to its directory.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path,
                                          absl::string_view context = "");

// Returns the value of an environment variable, or nullopt when unset.
using EnvLookup =
    std::function<absl::optional<std::string>(const std::string&)>;

inline constexpr char kServiceAccountDir[] =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// Config of a pod talking to its own cluster: KUBERNETES_SERVICE_HOST/PORT
// (IPv6 hosts get brackets), <dir>/token (as token_file, so it is re-read) and
// <dir>/ca.crt. A null `env` reads the process environment. Returns
// FailedPreconditionError when not running in a cluster.
absl::StatusOr<KubeConfig> InClusterConfig(
    EnvLookup env = nullptr, const std::string& dir = kServiceAccountDir);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_KUBE_CONFIG_H_

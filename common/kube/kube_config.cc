#include "common/kube/kube_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "yaml-cpp/yaml.h"

namespace pc {
namespace kube {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("error reading ", path));
  return out.str();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Resolve(absl::string_view base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return absl::StrCat(absl::StripSuffix(base_dir, "/"), "/", path);
}

// Scalar string child of `node`, or "" when absent. Throws YAML exceptions on
// a non-scalar, which the caller turns into a status.
std::string Str(const YAML::Node& node, const char* key) {
  YAML::Node child = node[key];
  if (!child || child.IsNull()) return "";
  return child.as<std::string>();
}

// Finds {name: <name>, <field>: {...}} in a kubeconfig list.
YAML::Node FindNamed(const YAML::Node& root, const char* list,
                     const char* field, const std::string& name) {
  YAML::Node items = root[list];
  if (!items || !items.IsSequence())
    return YAML::Node(YAML::NodeType::Undefined);
  for (const YAML::Node& item : items) {
    if (!item.IsMap()) continue;
    if (Str(item, "name") == name) return item[field];
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

absl::StatusOr<std::string> DecodeData(const std::string& b64,
                                       const char* what) {
  std::string out;
  std::string compact;
  for (char c : b64) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c)))
      compact.push_back(c);
  }
  if (!absl::Base64Unescape(compact, &out) || out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig: ", what, " is not valid base64"));
  }
  return out;
}

absl::StatusOr<KubeConfig> ParseImpl(absl::string_view yaml,
                                     absl::string_view base_dir,
                                     absl::string_view context_arg) {
  YAML::Node root = YAML::Load(std::string(yaml));
  if (!root.IsMap()) {
    return absl::InvalidArgumentError("kubeconfig: top level is not a mapping");
  }
  std::string context_name(context_arg);
  if (context_name.empty()) context_name = Str(root, "current-context");
  if (context_name.empty()) {
    return absl::InvalidArgumentError(
        "kubeconfig: no context given and current-context is not set");
  }
  YAML::Node context = FindNamed(root, "contexts", "context", context_name);
  if (!context || !context.IsMap()) {
    return absl::NotFoundError(
        absl::StrCat("kubeconfig: context \"", context_name, "\" not found"));
  }
  std::string cluster_name = Str(context, "cluster");
  if (cluster_name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kubeconfig: context \"", context_name, "\" names no cluster"));
  }
  YAML::Node cluster = FindNamed(root, "clusters", "cluster", cluster_name);
  if (!cluster || !cluster.IsMap()) {
    return absl::NotFoundError(
        absl::StrCat("kubeconfig: cluster \"", cluster_name, "\" not found"));
  }

  KubeConfig config;
  config.server = Str(cluster, "server");
  while (absl::EndsWith(config.server, "/")) config.server.pop_back();
  if (config.server.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kubeconfig: cluster \"", cluster_name, "\" has no server"));
  }
  if (!absl::StartsWith(config.server, "https://") &&
      !absl::StartsWith(config.server, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig: cluster \"", cluster_name, "\" server \"",
                     config.server, "\" is not an http(s) URL"));
  }
  if (YAML::Node skip = cluster["insecure-skip-tls-verify"];
      skip && !skip.IsNull()) {
    config.insecure_skip_tls_verify = skip.as<bool>();
  }
  if (std::string data = Str(cluster, "certificate-authority-data");
      !data.empty()) {
    auto pem = DecodeData(data, "certificate-authority-data");
    if (!pem.ok()) return pem.status();
    config.ca_pem = *std::move(pem);
  } else if (std::string file = Str(cluster, "certificate-authority");
             !file.empty()) {
    config.ca_file = Resolve(base_dir, file);
  }

  std::string user_name = Str(context, "user");
  if (!user_name.empty()) {
    YAML::Node user = FindNamed(root, "users", "user", user_name);
    if (!user) {
      return absl::NotFoundError(
          absl::StrCat("kubeconfig: user \"", user_name, "\" not found"));
    }
    if (user.IsMap()) {
      if (std::string data = Str(user, "client-certificate-data");
          !data.empty()) {
        auto pem = DecodeData(data, "client-certificate-data");
        if (!pem.ok()) return pem.status();
        config.client_cert_pem = *std::move(pem);
      } else if (std::string file = Str(user, "client-certificate");
                 !file.empty()) {
        config.client_cert_file = Resolve(base_dir, file);
      }
      if (std::string data = Str(user, "client-key-data"); !data.empty()) {
        auto pem = DecodeData(data, "client-key-data");
        if (!pem.ok()) return pem.status();
        config.client_key_pem = *std::move(pem);
      } else if (std::string file = Str(user, "client-key"); !file.empty()) {
        config.client_key_file = Resolve(base_dir, file);
      }
      config.token = Str(user, "token");
      if (std::string file = Str(user, "tokenFile"); !file.empty()) {
        config.token_file = Resolve(base_dir, file);
      }
      bool has_cert =
          !config.client_cert_pem.empty() || !config.client_cert_file.empty();
      bool has_key =
          !config.client_key_pem.empty() || !config.client_key_file.empty();
      if (has_cert != has_key) {
        return absl::InvalidArgumentError(
            absl::StrCat("kubeconfig: user \"", user_name, "\" has a client ",
                         has_cert ? "certificate but no client-key"
                                  : "key but no client-certificate"));
      }
      bool has_token = !config.token.empty() || !config.token_file.empty();
      if (!has_cert && !has_token) {
        for (const char* plugin : {"exec", "auth-provider"}) {
          if (user[plugin]) {
            return absl::UnimplementedError(absl::StrCat(
                "kubeconfig: user \"", user_name, "\" uses ", plugin,
                " credentials, which are not supported; use a token, tokenFile "
                "or client certificate"));
          }
        }
      }
    }
  }
  return config;
}

}  // namespace

absl::StatusOr<KubeConfig> ParseKubeconfig(absl::string_view yaml,
                                           absl::string_view base_dir,
                                           absl::string_view context) {
  // yaml-cpp reports malformed input and type mismatches by throwing; nothing
  // may escape this module.
  try {
    return ParseImpl(yaml, base_dir, context);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("kubeconfig: ", e.what()));
  }
}

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path,
                                          absl::string_view context) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  auto config = ParseKubeconfig(*text, DirName(path), context);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::StatusOr<KubeConfig> InClusterConfig(EnvLookup env,
                                           const std::string& dir) {
  if (!env) {
    env = [](const std::string& name) -> absl::optional<std::string> {
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) return absl::nullopt;
      return std::string(value);
    };
  }
  absl::optional<std::string> host = env("KUBERNETES_SERVICE_HOST");
  absl::optional<std::string> port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return absl::FailedPreconditionError(
        "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
        "must be set");
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(*port, &port_number) || port_number <= 0 ||
      port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("KUBERNETES_SERVICE_PORT \"", *port, "\" is not a port"));
  }
  std::string h = *host;
  if (h.find(':') != std::string::npos && h.front() != '[')
    h = absl::StrCat("[", h, "]");

  KubeConfig config;
  config.server = absl::StrCat("https://", h, ":", port_number);
  std::string base = std::string(absl::StripSuffix(dir, "/"));
  config.token_file = base + "/token";
  config.ca_file = base + "/ca.crt";
  auto token = ReadSmallFile(config.token_file);
  if (!token.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("in-cluster config: service account token: ",
                     token.status().message()));
  }
  if (absl::StripAsciiWhitespace(*token).empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("in-cluster config: service account token ",
                     config.token_file, " is empty"));
  }
  if (auto ca = ReadSmallFile(config.ca_file); !ca.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("in-cluster config: cluster CA: ", ca.status().message()));
  }
  return config;
}

}  // namespace kube
}  // namespace pc

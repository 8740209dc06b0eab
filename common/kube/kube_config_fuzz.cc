// Fuzzes ParseKubeconfig with arbitrary YAML. The first byte says whether a
// context name (length-prefixed) follows; the rest is the kubeconfig. yaml-cpp
// throws on malformed input: nothing may escape, and an accepted config must
// keep the KubeConfig contract (an http(s) server without a trailing '/',
// paths resolved against the kubeconfig's directory, at most one of file and
// PEM per credential, a client certificate only with its key).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/kube/kube_config.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

void CheckPath(const std::string& path, const char* what) {
  if (path.empty()) return;
  FUZZ_CHECK(path[0] == '/', absl::StrCat(what, " not resolved: ", path));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const std::string context = in.Bool() ? in.LengthPrefixed() : "";
  const std::string yaml = in.Rest();

  auto config = pc::kube::ParseKubeconfig(yaml, "/etc/kube", context);
  if (!config.ok()) {
    const absl::Status& s = config.status();
    FUZZ_CHECK(absl::IsInvalidArgument(s) || absl::IsNotFound(s) ||
                   absl::IsUnimplemented(s),
               s.ToString());
    FUZZ_CHECK(!s.message().empty(), "empty message");
    return 0;
  }
  const pc::kube::KubeConfig& c = *config;
  FUZZ_CHECK(absl::StartsWith(c.server, "https://") ||
                 absl::StartsWith(c.server, "http://"),
             c.server);
  FUZZ_CHECK(!absl::EndsWith(c.server, "/"), c.server);
  FUZZ_CHECK(c.ca_file.empty() || c.ca_pem.empty(), "CA file and PEM");
  FUZZ_CHECK(c.client_cert_file.empty() || c.client_cert_pem.empty(),
             "client certificate file and PEM");
  FUZZ_CHECK(c.client_key_file.empty() || c.client_key_pem.empty(),
             "client key file and PEM");
  const bool has_cert =
      !c.client_cert_file.empty() || !c.client_cert_pem.empty();
  const bool has_key = !c.client_key_file.empty() || !c.client_key_pem.empty();
  FUZZ_CHECK(has_cert == has_key, "certificate without key or key without it");
  CheckPath(c.ca_file, "certificate-authority");
  CheckPath(c.client_cert_file, "client-certificate");
  CheckPath(c.client_key_file, "client-key");
  CheckPath(c.token_file, "tokenFile");
  return 0;
}

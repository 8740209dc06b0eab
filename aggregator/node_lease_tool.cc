// node_lease_tool: takes one node's Lease as a replica would (NodeLeases),
// holds and renews it for a while, optionally releases it, and says what
// happened on stdout, one line per event:
//   acquired epoch=N | held holder=ID address=ADDR | error CODE: MESSAGE
//   lost                       (a renewal found it taken or could not renew)
//   done holds=0|1
// Exit status: 0 acquired, 3 held by another replica, 1 any other error.
// Without --release it exits without releasing, like a replica that dies.
// Used by testing/node_lease_e2e_test.sh against a real kube-apiserver.
#include <csignal>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/node_lease.h"
#include "common/kube/http_client.h"
#include "common/kube/kube_config.h"

ABSL_FLAG(std::string, kubeconfig, "", "kubeconfig file");
ABSL_FLAG(std::string, namespace_name, "kube-system", "the Leases' namespace");
ABSL_FLAG(std::string, identity, "", "this replica's id (holderIdentity)");
ABSL_FLAG(std::string, address, "", "this replica's advertised host:port");
ABSL_FLAG(std::string, node, "", "the node whose Lease to take");
ABSL_FLAG(absl::Duration, lease_duration, absl::Seconds(8), "lease duration");
ABSL_FLAG(absl::Duration, hold, absl::ZeroDuration(),
          "how long to keep the Lease (renewing it) once acquired");
ABSL_FLAG(bool, release, false, "release the Lease at the end");
ABSL_FLAG(bool, wait, false,
          "wait (up to the lease duration) for a holder that does not renew, "
          "as the aggregator does, instead of reporting it at once");

namespace {

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // see http_client.h
  absl::StatusOr<pc::kube::KubeConfig> config =
      pc::kube::LoadKubeconfig(absl::GetFlag(FLAGS_kubeconfig));
  if (!config.ok()) {
    Say(absl::StrCat("error ", config.status().ToString()));
    return 1;
  }
  auto http = pc::kube::HttpClient::Create(*std::move(config));
  if (!http.ok()) {
    Say(absl::StrCat("error ", http.status().ToString()));
    return 1;
  }
  pc::aggregator::NodeLeaseOptions options;
  options.namespace_name = absl::GetFlag(FLAGS_namespace_name);
  options.identity = absl::GetFlag(FLAGS_identity);
  options.address = absl::GetFlag(FLAGS_address);
  options.lease_duration = absl::GetFlag(FLAGS_lease_duration);
  options.wait_for_silent_holder = absl::GetFlag(FLAGS_wait);
  pc::aggregator::NodeLeases leases(http->get(), options);
  leases.SetOnLost([](const std::string&) { Say("lost"); });

  const std::string node = absl::GetFlag(FLAGS_node);
  pc::aggregator::LeaseHolder other;
  absl::StatusOr<pc::aggregator::LeaseHolder> got =
      leases.Acquire(node, &other);
  if (absl::IsFailedPrecondition(got.status())) {
    Say(absl::StrCat("held holder=", other.identity,
                     " address=", other.address));
    return 3;
  }
  if (!got.ok()) {
    Say(absl::StrCat("error ", got.status().ToString()));
    return 1;
  }
  Say(absl::StrCat("acquired epoch=", got->epoch));
  absl::SleepFor(absl::GetFlag(FLAGS_hold));
  const bool holds = leases.Holds(node);
  if (absl::GetFlag(FLAGS_release)) leases.Release(node);
  Say(absl::StrCat("done holds=", holds ? 1 : 0));
  return 0;
}

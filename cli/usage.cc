// capturectl help: the overview a person reads first.
#include "cli/options.h"

namespace pc::cli {

const char kUsage[] =
    R"(usage: capturectl [--server=HOST:PORT] [--token-file=FILE] COMMAND [ARGS]

Talks to a packetcapture.v1.CaptureService: the aggregator (every node) or an
agent (its node). Default server: $CAPTURECTL_SERVER, else 127.0.0.1:9090
(e.g. kubectl -n kube-system port-forward svc/capture-aggregator 9090:9090).

Through a port-forward no token is needed. Elsewhere the aggregator wants a
bearer token and shows the namespaces whose captures its user may read
(RBAC: get on captures.packetcapture.antrea.io, e.g. ClusterRole
packet-capture-reader bound in the namespace):
  --token-file=FILE     a file holding the token, e.g. from
                        kubectl create token SA -n NS > FILE
  --token=TOKEN         the token itself (visible to other local users in
                        the process list: prefer --token-file)
The connection is plaintext: the token and the pcap data cross the network
unencrypted (capturectl warns when the server is not on this host).

commands:
  capture -n NS POD | -n NS -l SELECTOR [--files N] [--filter F] [--snaplen S]
          [--duration D] [--max-packets M] [-w FILE | --follow] [--force]
                        annotate the Pod(s) through the Kubernetes API
                        (--kubeconfig, else $KUBECONFIG, else ~/.kube/config),
                        wait for RUNNING, stream the capture live to stdout
                        (| wireshark -k -i -) or FILE, and remove the
                        annotations on Ctrl-C, --duration, the stream's end or
                        an error. Several pods (-l) arrive merged as pcapng.
                        A Pod already annotated is refused unless --force.
  list [--node=N] [--namespace=NS] [--pod=P] [--state=STATE] [-o wide|json|yaml]
                        a table of captures (STATE: PENDING RUNNING STOPPED FAILED)
  get ID                one capture as JSON
  describe ID           one capture for a person: sizes, ages, options, files
  download ID [-o FILE] [--quiet] [--format pcap|pcapng]
                        the capture as one file (default ID.pcap; - for stdout);
                        written to a temporary name and renamed when complete;
                        a progress bar on a terminal unless --quiet
  follow ID [-o FILE]   the capture so far, then new packets as they come, to
                        stdout by default: capturectl follow ID | wireshark -k -i -
  watch [--node=N] [--namespace=NS] [--pod=P]
                        one line per capture change, until interrupted
  completion bash       a bash completion script:
                        source <(capturectl completion bash)
  help                  this text; COMMAND --help shows a command's flags
)";

}  // namespace pc::cli

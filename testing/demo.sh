#!/usr/bin/env bash
# The main job on one machine: installs what it needs, builds the binaries,
# brings up the local cluster (real etcd + kube-apiserver, one capture-agent
# per simulated node), and walks through a capture the way a user would:
# annotate a pod, watch the capture with grpcurl, download the pcap, read it
# with tcpdump, remove the annotation. The cluster stays up afterwards for
# exploring; `testing/cluster.sh down` removes it. Needs root.
#
#   testing/demo.sh              # simulated nodes (network-namespace pods)
#   testing/demo.sh --real-node  # the README's Kubernetes walkthrough on a real kubelet +
#                                # containerd node running the image built from the
#                                # Dockerfile and k8s/with-aggregator
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

real_node=0
case "${1:-}" in
  "") ;;
  --real-node) real_node=1 ;;
  *) echo "usage: testing/demo.sh [--real-node]" >&2; exit 2 ;;
esac

if [ "$real_node" = 1 ]; then
  exec testing/demo_real_node.sh
fi

step "Installing packages and Go test tools (idempotent)"
tools=$(testing/setup.sh | tail -1)
export PATH="$tools:$PATH"

step "Building capture-agent and capture-aggregator"
targets=(//node_agent:capture-agent)
[ -f aggregator/BUILD.bazel ] && targets+=(//aggregator:capture-aggregator)
bazel build "${targets[@]}"

step "Starting the local cluster"
testing/cluster.sh up --nodes 2
bazel shutdown >/dev/null 2>&1 || true
eval "$(testing/cluster.sh env)"
agent_a=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-a=//p')
show kubectl get nodes

step "Creating two pods on node-a"
web_ip=$(testing/cluster.sh pod add node-a demo web-1)
client_ip=$(testing/cluster.sh pod add node-a demo client-1)
echo "web-1=$web_ip client-1=$client_ip"
show kubectl get pods -n demo -o wide

step "Annotating web-1: capture, keeping at most 3 files of 1 MB"
show kubectl annotate pod -n demo web-1 tcpdump.antrea.io=3
sleep 1
testing/cluster.sh traffic demo client-1 5 >/dev/null
show grpcurl -plaintext "$agent_a" list
show grpcurl -plaintext -d '{"pod":"web-1"}' "$agent_a" packetcapture.v1.CaptureService/ListCaptures
sleep 6

step "Downloading the capture and reading it with tcpdump"
id=$(grpcurl -plaintext -d '{"pod":"web-1"}' "$agent_a" packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[0].id')
grpcurl -plaintext -d "{\"id\":\"$id\"}" "$agent_a" packetcapture.v1.CaptureService/DownloadCapture |
  jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done > /tmp/web-1.pcap
ls -l /tmp/web-1.pcap
show tcpdump -r /tmp/web-1.pcap -n -c 6
show kubectl describe pod -n demo web-1

step "Removing the annotation: tcpdump stops, the node's files are deleted"
show kubectl annotate pod -n demo web-1 tcpdump.antrea.io-
sleep 1
show ls -la "$CLUSTER_STATE/nodes/node-a/captures"
show grpcurl -plaintext -d '{"pod":"web-1"}' "$agent_a" packetcapture.v1.CaptureService/ListCaptures

step "Done. The cluster is still up:"
testing/cluster.sh env
echo "Remove it with: testing/cluster.sh down"

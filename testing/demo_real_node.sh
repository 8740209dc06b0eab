#!/usr/bin/env bash
# testing/demo.sh --real-node: the README's Kubernetes walkthrough, command for command, on
# the harness's real node (kubelet + containerd running the image built from the
# Dockerfile, k8s/with-aggregator applied unchanged). Prints each command and its output.
# The cluster stays up afterwards; `testing/cluster.sh down` removes it. Needs root.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Installing packages, Go-built tools (kubelet, kube-proxy, CoreDNS, ...) and the images"
setup_log=/var/cache/packet-capture/demo-setup.log
mkdir -p "$(dirname "$setup_log")"
echo "(idempotent; cold it takes about half an hour on 2 cores. Log: $setup_log)"
if ! tools=$(testing/setup.sh --real-node 2> "$setup_log" | tail -1); then
  tail -n 20 "$setup_log"
  echo "setup failed (log: $setup_log)"
  exit 1
fi
export PATH="$tools:$PATH"

step "Building capture-agent and capture-aggregator for the simulated nodes"
bazel build //node_agent:capture-agent //aggregator:capture-aggregator //cli:capturectl 2>&1 | tail -1
bazel shutdown > /dev/null 2>&1 || true
# The harness starts these (it would otherwise run bazel build itself).
export CAPTURE_AGENT_BIN=$root/bazel-bin/node_agent/capture-agent
export CAPTURE_AGGREGATOR_BIN=$root/bazel-bin/aggregator/capture-aggregator

step "Starting the local cluster with the real node real-a"
testing/cluster.sh up --real-node
eval "$(testing/cluster.sh env)"
show kubectl get nodes -o wide
show kubectl -n kube-system get pods -o wide

step "The README's walkthrough: the test pod, annotated"
show kubectl -n kube-system rollout status deploy/capture-aggregator
show kubectl -n kube-system rollout status ds/capture-agent
show kubectl apply -f k8s/test-pod.yaml
show kubectl wait --for=condition=Ready pod/traffic-test --timeout=120s
show kubectl annotate pod traffic-test tcpdump.antrea.io="5"
sleep 5
printf '$ kubectl describe pod traffic-test | sed -n "/^Events:/,\\$p"\n'
kubectl describe pod traffic-test | sed -n '/^Events:/,$p'

step "The files on the test pod's node"
node=$(kubectl get pod traffic-test -o jsonpath='{.spec.nodeName}')
agent=$(kubectl -n kube-system get pod -l app.kubernetes.io/name=capture-agent \
  --field-selector "spec.nodeName=$node" -o name)
show kubectl -n kube-system exec "$agent" -- ls -lR /captures

step "Every node's captures through the aggregator (port-forward: $AGGREGATOR)"
show grpcurl -plaintext "$AGGREGATOR" list
show grpcurl -plaintext -d '{"namespace":"default","pod":"traffic-test"}' "$AGGREGATOR" \
  packetcapture.v1.CaptureService/ListCaptures
id=$(grpcurl -plaintext -d '{"namespace":"default","pod":"traffic-test"}' "$AGGREGATOR" \
  packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[0].id')

step "Downloading it and reading it with tcpdump"
grpcurl -plaintext -d "{\"id\":\"$id\"}" "$AGGREGATOR" packetcapture.v1.CaptureService/DownloadCapture |
  jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done > /tmp/traffic-test.pcap
ls -l /tmp/traffic-test.pcap
show tcpdump -r /tmp/traffic-test.pcap -n -c 12

step "Removing the annotation: tcpdump stops, the node's files go, the aggregator keeps a copy"
show kubectl annotate pod traffic-test tcpdump.antrea.io-
sleep 2
show kubectl -n kube-system exec "$agent" -- ls -lR /captures
show grpcurl -plaintext -d '{"namespace":"default","pod":"traffic-test"}' "$AGGREGATOR" \
  packetcapture.v1.CaptureService/ListCaptures

step "Done. The cluster is still up:"
testing/cluster.sh env
echo "Remove it with: testing/cluster.sh down"

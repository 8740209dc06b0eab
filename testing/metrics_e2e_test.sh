#!/usr/bin/env bash
# End-to-end check of the daemons' Prometheus metrics with a real Prometheus (Debian's
# /usr/bin/prometheus, run here on loopback with a generated config and a temporary
# storage dir, scraping every second): the local cluster's two agents and its aggregator
# are scraped and "up"; a pod on node-a is captured while another pod pings it; then
# Prometheus's HTTP API (/api/v1/query) answers what a user would ask: node-a has one
# RUNNING capture and has captured bytes, that pod's bytes are counted, node-b has none,
# the aggregator ingested bytes from two open agent streams, its flush latency has a p99,
# and the uplink's lag comes back down. Also the README's curl one-liner on an agent's
# /metrics. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=metrics_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-metrics-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-metrics-e2e-work.XXXXXX)
prom_pid=
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
  "$CLUSTER" down >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$PROMETHEUS" ] || { fail "prometheus is installed" "$PROMETHEUS (testing/setup.sh)"; e2e_finish; exit 1; }
"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 2; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
e2e_log "metrics: aggregator $AGGREGATOR_METRICS, agents $AGENT_METRICS"
agent_a=$(tr ' ' '\n' <<< "$AGENT_METRICS" | sed -n 's/^node-a=//p')
agent_b=$(tr ' ' '\n' <<< "$AGENT_METRICS" | sed -n 's/^node-b=//p')
check "env names a /metrics address for the aggregator and each agent" \
  test -n "$AGGREGATOR_METRICS" -a -n "$agent_a" -a -n "$agent_b"

# --- a real Prometheus on loopback, as the README's scrape config says ---
prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prom=127.0.0.1:$prom_port
cat > "$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: capture-aggregator
    static_configs:
      - targets: ['$AGGREGATOR_METRICS']
  - job_name: capture-agent
    static_configs:
      - targets: ['$agent_a']
        labels: {node: node-a}
      - targets: ['$agent_b']
        labels: {node: node-b}
EOF
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="$prom" --log.level=warn > "$work/prometheus.log" 2>&1 &
prom_pid=$!
ready() { curl -sf --max-time 2 "http://$prom/-/ready" > /dev/null; }
if ! eventually 30 ready; then
  fail "Prometheus starts on $prom" "$(tail -5 "$work/prometheus.log")"
  e2e_finish
  exit 1
fi
pass "Prometheus starts on $prom"

# value QUERY: the first result's value from Prometheus's HTTP API (empty if none).
value() {
  curl -sf --max-time 5 -G --data-urlencode "query=$1" "http://$prom/api/v1/query" |
    jq -r 'select(.status == "success") | .data.result[0].value[1] // empty'
}
# holds QUERY: the query (a comparison, e.g. `x > 0`) returns a sample.
holds() { [ -n "$(value "$1")" ]; }
equals() { [ "$(value "$1")" = "$2" ]; }  # QUERY VALUE

check_eventually "Prometheus scrapes the aggregator (up == 1)" 20 equals 'up{job="capture-aggregator"}' 1
check_eventually "Prometheus scrapes both agents (up == 1)" 20 equals 'sum(up{job="capture-agent"})' 2

# --- a captured pod with traffic ---
"$CLUSTER" pod add node-a metrics web-1 > /dev/null
"$CLUSTER" pod add node-b metrics client-1 > /dev/null
kubectl annotate pod -n metrics web-1 tcpdump.antrea.io=2 > /dev/null
"$CLUSTER" traffic metrics client-1 60 2> /dev/null

running_by_node() {
  equals 'packetcapture_agent_captures{node="node-a",state="running"}' 1 &&
    equals 'packetcapture_agent_captures{node="node-b",state="running"}' 0
}
check_eventually "node-a has 1 RUNNING capture, node-b none" 20 running_by_node
check_eventually "node-a's agent has captured bytes and packets" 30 \
  holds 'packetcapture_agent_captured_bytes_total{node="node-a"} > 0 and on(node) packetcapture_agent_captured_packets_total > 0'
check_eventually "web-1's own captured bytes are counted" 30 \
  holds 'packetcapture_agent_pod_captured_bytes_total{namespace="metrics",pod="web-1"} > 0'
check "node-b's agent captured nothing" equals 'packetcapture_agent_captured_bytes_total{node="node-b"}' 0
check_eventually "the aggregator ingested bytes and chunks" 30 \
  holds 'packetcapture_aggregator_ingest_bytes_total > 0 and on() packetcapture_aggregator_ingest_chunks_total > 0'
check_eventually "the aggregator stores bytes within its budget" 10 \
  holds 'packetcapture_aggregator_stored_bytes > 0 and on() packetcapture_aggregator_stored_bytes < packetcapture_aggregator_budget_bytes'
check_eventually "the aggregator has two open agent streams" 10 equals 'packetcapture_aggregator_agent_streams' 2
check_eventually "both agents are connected to it" 10 equals 'sum(packetcapture_agent_uplink_connected)' 2
check_eventually "its TokenReviews accepted the agents" 10 holds 'packetcapture_aggregator_token_reviews_total{result="authenticated"} >= 2'
check_eventually "flush latency has a p99 (histogram_quantile over 30s)" 20 \
  holds 'histogram_quantile(0.99, rate(packetcapture_aggregator_flush_duration_seconds_bucket[30s])) >= 0'
check_eventually "node-a's acknowledged upload grows and its lag comes back under 64 KiB" 30 \
  holds 'packetcapture_agent_uplink_acked_bytes_total{node="node-a"} > 0 and on(node) packetcapture_agent_uplink_lag_bytes < 65536'
check "no bytes were lost" equals 'sum(packetcapture_agent_uplink_lost_bytes_total)' 0

# --- the README's one-liner, on node-a's agent ---
readme_curl() {  # the README's `curl -s localhost:9102/metrics | grep ...`, on node-a's port
  curl -s "$agent_a/metrics" | grep '^packetcapture_agent_captures{state="running"} 1$'
}
check "the README's curl one-liner shows node-a's running capture" readme_curl

e2e_finish

#!/usr/bin/env python3
"""capture-agent benchmarks on the local cluster, each figure beside its peer
measured in the same run (targets from DESIGN.md). Prints figures; asserts
nothing about speed.

  testing/agent_benchmark.sh        # builds, brings a 1-node cluster up, runs this

Figures:
  1. annotate -> tcpdump writing (first ring file holds the 24-byte pcap
     header), timed from the PATCH that adds the annotation; peer: bare
     tcpdump started with `ip netns exec` until its file holds the header.
  2. annotation removed -> capture directory gone; peer: SIGINT to a bare
     tcpdump -> exit -> unlink.
  3. agent RSS idle with 0 and 10 captures; peer: a bare gRPC C++ client.
  4. agent CPU at 100k packets/s (tcpdump excluded) vs tcpdump's own CPU,
     with packets counted and kernel drops.
"""
import base64
import glob
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

STATE = os.environ["CLUSTER_STATE"]
CLUSTER = os.environ["CLUSTER"]
BENCH_BIN = os.environ["BENCH_BIN"]  # dir with bare_grpc_client, udp_flood
NODE = "node-a"
NS = "bench"
CAPS = f"{STATE}/nodes/{NODE}/captures"
ROUNDS = int(os.environ.get("ROUNDS", "20"))


def run(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw).stdout


def kubeconfig():
    cfg = json.loads(run("kubectl", "config", "view", "--raw", "--minify", "-o", "json"))
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return cluster["server"], user["token"], ctx


SERVER, TOKEN, SSL_CTX = kubeconfig()


def patch_annotation(pod, value):
    body = json.dumps({"metadata": {"annotations": {"tcpdump.antrea.io": value}}}).encode()
    req = urllib.request.Request(
        f"{SERVER}/api/v1/namespaces/{NS}/pods/{pod}", data=body, method="PATCH",
        headers={"Authorization": f"Bearer {TOKEN}",
                 "Content-Type": "application/merge-patch+json"})
    with urllib.request.urlopen(req, context=SSL_CTX, timeout=10) as resp:
        resp.read()


def wait_for(predicate, timeout=10.0, interval=0.001):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def header_written(pattern):
    def check():
        for path in glob.glob(pattern):
            try:
                if os.path.getsize(path) >= 24:
                    return True
            except OSError:
                pass
        return False
    return check


def pct(values, p):
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def ms_summary(values):
    ms = [v * 1000 for v in values]
    return (f"p50 {pct(ms, 50):6.1f} ms  p90 {pct(ms, 90):6.1f}  p99 {pct(ms, 99):6.1f}  "
            f"max {max(ms):6.1f}  (n={len(ms)})")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pod_netns(pod):
    return run(CLUSTER, "pod", "netns", NS, pod).strip()


def agent_pid():
    with open(f"{STATE}/pids/agent-{NODE}.pid") as f:
        return int(f.read().split()[0])


def list_captures(pod):
    out = run("grpcurl", "-plaintext", "-d", json.dumps({"pod": pod}), AGENT,
              "packetcapture.v1.CaptureService/ListCaptures")
    return json.loads(out).get("captures", [])


AGENT = dict(a.split("=") for a in os.environ["AGENTS"].split())[NODE]
results = []


def report(figure, agent, peer, target, met):
    results.append((figure, agent, peer, target, "yes" if met else "NO"))


def main():
    pods = [f"p{i}" for i in range(ROUNDS)]
    ips = {}
    for pod in pods + ["client", "sink"]:
        ips[pod] = run(CLUSTER, "pod", "add", NODE, NS, pod).strip()
    time.sleep(1)

    # 1 + 2: agent start and stop latency.
    start, stop = [], []
    for pod in pods:
        t0 = time.perf_counter()
        patch_annotation(pod, "2")
        t1 = wait_for(header_written(f"{CAPS}/{NS}_{pod}_*/run-1-w2/ring0"))
        start.append(t1 - t0)
        time.sleep(0.2)
        dirs = glob.glob(f"{CAPS}/{NS}_{pod}_*")
        t2 = time.perf_counter()
        patch_annotation(pod, None)
        t3 = wait_for(lambda: not any(os.path.exists(d) for d in dirs))
        stop.append(t3 - t2)

    # Peers: bare tcpdump in the same kind of namespace.
    bare_start, bare_stop = [], []
    tmp = tempfile.mkdtemp(prefix="pc-bench-")
    netns = pod_netns(pods[0])
    for i in range(ROUNDS):
        out = f"{tmp}/bare{i}.pcap"
        t0 = time.perf_counter()
        proc = subprocess.Popen(["ip", "netns", "exec", netns, "/usr/bin/tcpdump", "-i", "eth0",
                                 "-Z", "root", "-U", "-n", "-w", out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t1 = wait_for(header_written(out))
        bare_start.append(t1 - t0)
        time.sleep(0.2)
        t2 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        os.unlink(out)
        bare_stop.append(time.perf_counter() - t2)

    print("annotate -> tcpdump writing")
    print("  agent:        " + ms_summary(start))
    print("  bare tcpdump: " + ms_summary(bare_start))
    print("annotation removed -> files gone")
    print("  agent:        " + ms_summary(stop))
    print("  bare SIGINT -> unlink: " + ms_summary(bare_stop))
    report("annotate -> writing p50/p99 (ms)", f"{pct(start, 50)*1e3:.0f} / {pct(start, 99)*1e3:.0f}",
           f"{pct(bare_start, 50)*1e3:.0f} / {pct(bare_start, 99)*1e3:.0f}", "<= 150 / 500",
           pct(start, 50) <= 0.150 and pct(start, 99) <= 0.500)
    report("removed -> files gone p99 (ms)", f"{pct(stop, 99)*1e3:.0f}",
           f"{pct(bare_stop, 99)*1e3:.0f}", "<= 500", pct(stop, 99) <= 0.500)

    # 3: RSS idle with 0 and 10 captures.
    time.sleep(2)
    pid = agent_pid()
    rss0 = rss_kib(pid)
    for pod in pods[:10]:
        patch_annotation(pod, "1")
    for pod in pods[:10]:
        wait_for(header_written(f"{CAPS}/{NS}_{pod}_*/run-1-w1/ring*"), interval=0.01)
    time.sleep(3)
    rss10 = rss_kib(pid)
    client = subprocess.Popen([f"{BENCH_BIN}/bare_grpc_client", AGENT, "5"],
                              stdout=subprocess.PIPE, text=True)
    client.stdout.readline()  # after its call: channel and threads exist
    time.sleep(0.5)
    rss_client = rss_kib(client.pid)
    client.wait()
    per_capture = (rss10 - rss0) / 10
    print(f"agent RSS: {rss0/1024:.1f} MiB idle, {rss10/1024:.1f} MiB with 10 captures "
          f"({per_capture/1024:.2f} MiB per capture); bare gRPC C++ client: {rss_client/1024:.1f} MiB")
    report("agent idle RSS (MiB)", f"{rss0/1024:.1f}", f"{rss_client/1024:.1f}", "<= 24", rss0 <= 24 * 1024)
    report("RSS per extra capture (MiB)", f"{per_capture/1024:.2f}", "-", "<= 2", per_capture <= 2048)
    for pod in pods[:10]:
        patch_annotation(pod, None)
    time.sleep(2)

    # 4: CPU at 100k packets/s into one captured pod, 8 s: 800k frames of
    # 106 bytes + 16-byte record headers = ~98 MB, inside the 100-file ring,
    # so every captured packet is still on disk to be counted.
    patch_annotation("sink", "100")
    wait_for(header_written(f"{CAPS}/{NS}_sink_*/run-1-w100/ring*"), interval=0.01)
    time.sleep(1)
    tcpdump_pid = int(run("pgrep", "-f", "--", f"-w {CAPS}/{NS}_sink_").split()[0])
    a0, t0c, w0 = cpu_seconds(pid), cpu_seconds(tcpdump_pid), time.perf_counter()
    flood = run("ip", "netns", "exec", pod_netns("client"), f"{BENCH_BIN}/udp_flood",
                ips["sink"], "100000", "8")
    a1, t1c, w1 = cpu_seconds(pid), cpu_seconds(tcpdump_pid), time.perf_counter()
    time.sleep(7)  # the agent asks tcpdump for its counters every 5 s
    cap = list_captures("sink")[0]
    sent = int(flood.split()[1])
    agent_cpu = 100 * (a1 - a0) / (w1 - w0)
    tcpdump_cpu = 100 * (t1c - t0c) / (w1 - w0)
    ratio = agent_cpu / tcpdump_cpu if tcpdump_cpu else float("inf")
    print(f"100k pps for 8 s: {flood.strip()}")
    print(f"  agent CPU {agent_cpu:.1f}% of a core, tcpdump CPU {tcpdump_cpu:.1f}% "
          f"(ratio {ratio:.2f}); packets in capture {cap.get('packets', 0)}, "
          f"kernel drops {cap.get('dropped_packets', '0')}")
    report("agent CPU at 100k pps (% core)", f"{agent_cpu:.1f}", f"tcpdump {tcpdump_cpu:.1f}",
           "<= 0.5 x tcpdump", ratio <= 0.5)
    report("kernel drops at 100k pps", str(cap.get("dropped_packets", "0")), "-", "0",
           str(cap.get("dropped_packets", "0")) == "0")
    patch_annotation("sink", None)

    print()
    print(f"{'figure':34} | {'agent':12} | {'peer':16} | {'target':18} | met")
    for row in results:
        print(f"{row[0]:34} | {row[1]:12} | {row[2]:16} | {row[3]:18} | {row[4]}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Object-store benchmarks of the aggregator replicas (issue 12). Each figure is
printed beside its peer measured in the same run; "meets"/"MISSES" is
information, never a failure.

  testing/object_store_benchmark.sh   # builds, brings the cluster up, runs this

Needs (the wrapper sets them): CLUSTER, CLUSTER_STATE, KUBECONFIG, AGGREGATOR,
AGGREGATORS, OBJECT_STORE, OBJECT_STORE_CREDENTIALS, BENCH_BIN (ingest_bench),
botocore (run it with /var/cache/packet-capture/venv/bin/python). Root.

  1. ingest MB/s (acknowledged bytes) with 1 and 10 agent-like streams
     (testing/bench/ingest_bench, as in testing/aggregator_benchmark.py) against
     replica 0 of `cluster.sh up --object-store --aggregators 1`, vs botocore
     PUTting objects of the size the aggregator wrote (its data objects listed
     after the run: count, mean size) to the same versitygw, with If-None-Match:
     * and the same two metadata headers, SigV4 with a signed payload (as our
     client), as many objects and bytes, with as many threads as streams.
  2. scaling, 30 streams: three ingest_bench processes of 10 streams each (one
     made-up node per stream), all against replica 0 with one replica, then one
     per replica after `up --aggregators 3`: total MB/s and CPU seconds per MB
     of the replicas (utime + stime from /proc, summed), of versitygw and of the
     load generators.
  3. figure 4 of testing/aggregator_benchmark.py (100 streams at 100 KiB/s)
     against replica 0, beside ingest_bench's null putter: the object-store
     twin of the null writer, which PUTs each batch as one object to the same
     versitygw through the same S3 client and acks it (no index, catalog,
     leases or compaction). Every welcome asks for the batching a replica
     asks of agents (256 KiB or 1 s), which the load generator honours;
     BENCH_PAIRS runs of each, alternating, judged on the median of the
     pairs' CPU ratios; the null writer (local files) once for reference.

  object_store_benchmark.py put-peer ENDPOINT CREDENTIALS PREFIX SIZE COUNT THREADS
     the botocore peer by itself (a separate process, so its CPU is its own).
"""
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import botocore.session
from botocore.config import Config

BUCKET = "packet-capture"
STORE_PREFIX = "cluster"   # testing/cluster/object_store.sh
CHUNK = 1 << 20            # node_agent/uplink.h max_chunk_bytes
WINDOW = 4 << 20           # the agent's window (the welcome may lower it)


def s3_client(endpoint, credentials, pool):
    keys = dict(l.strip().split("=", 1) for l in open(credentials) if "=" in l)
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                    retries={"max_attempts": 5, "mode": "standard"},
                    # As our client: SigV4 with the payload's SHA-256, no CRC trailer.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint, config=config,
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"])


def put_peer(endpoint, credentials, prefix, size, count, threads):
    """PUTs COUNT objects of SIZE bytes with THREADS threads; prints MB/s and own CPU."""
    s3 = s3_client(endpoint, credentials, threads)
    body = os.urandom(size)
    s3.head_bucket(Bucket=BUCKET)   # the connection and endpoint set up, as a replica has
    lock = threading.Lock()
    state = {"next": 0, "failed": 0}

    def worker():
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= count:
                return
            try:
                s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{i:08d}", Body=body, IfNoneMatch="*",
                              Metadata={"epoch": "1", "replica": "botocore-peer"})
            except Exception as e:  # noqa: BLE001 - counted and printed
                with lock:
                    state["failed"] += 1
                print(f"put-peer: {e}", file=sys.stderr)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    secs = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"bytes {size * count} seconds {secs:.3f} mbps {size * count / secs / 1e6:.1f} "
          f"failed {state['failed']} cpu {ru.ru_utime + ru.ru_stime:.2f}")
    return 0 if state["failed"] == 0 else 1


if len(sys.argv) > 1 and sys.argv[1] == "put-peer":
    sys.exit(put_peer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
                      int(sys.argv[7])))

# The benchmark proper: the helpers shared with the directory store's benchmark.
from aggregator_benchmark import (MANY, MANY_KIBPS, MANY_SECONDS, PAIRS,  # noqa: E402
                                  NullServer, clear_dir, cpu_seconds, create_nodes, log,
                                  measure_many, paired_runs, print_pairs, run)
from bench_table import print_table  # noqa: E402

STATE = os.environ["CLUSTER_STATE"]
CLUSTER = os.environ["CLUSTER"]
BIN = os.environ["BENCH_BIN"]
ENDPOINT = "http://" + os.environ["OBJECT_STORE"]
CREDENTIALS = os.environ["OBJECT_STORE_CREDENTIALS"]
ONE_MIB = int(os.environ.get("BENCH_ONE_MIB", "1024"))     # figure 1, one stream
TEN_MIB = int(os.environ.get("BENCH_TEN_MIB", "64"))      # figure 1, per stream of 10
SCALE_MIB = int(os.environ.get("BENCH_SCALE_MIB", "32"))  # figure 2, per stream of 30
FIGURES = set(os.environ.get("BENCH_FIGURES", "1,2,3").split(","))
# A directory: figure 1's aggregator runs are also recorded with `perf record` (replica 0 and
# versitygw, 999 Hz, no call graphs), into <dir>/<aggregator|versitygw>-<streams>.data, and
# figure 3's replica and null putter runs into <dir>/<replica|putter>-many-<pair>-pid<pid>.data
# (199 Hz, DWARF call graphs, the whole machine: `perf record -p` would miss the null putter's
# per-stream threads, which start later), and each pair's CPU is printed by part of the ingest
# path (testing/perf_breakdown.py).
PERF_DIR = os.environ.get("BENCH_PERF_DIR", "")
SCALE_PROCS, SCALE_STREAMS = 3, 10
# ingest_bench names stream i's capture bench_bench-<i>_<uid of i>_<start ms>: processes
# started in the same millisecond would share ids; starting them this far apart avoids it.
STAGGER = 0.25
IDLE_SECONDS = 6
results = []


def pid_of(name):
    return int(open(f"{STATE}/pids/{name}.pid").read().split()[0])


def lease_requests():
    """Requests about Leases the kube-apiserver has served so far, from all clients (its
    apiserver_request_total), by verb."""
    counts = {}
    for line in run("kubectl", "get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="leases"' in line:
            verb = line.split('verb="', 1)[1].split('"', 1)[0]
            counts[verb] = counts.get(verb, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def object_requests(replica=0):
    """The replica's object store requests so far, by operation, from its /metrics
    (packetcapture_aggregator_object_requests_total)."""
    addr = cluster_addresses("AGGREGATORS_METRICS")[replica]
    prefix = 'packetcapture_aggregator_object_requests_total{operation="'
    counts = {}
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(prefix):
                op = line[len(prefix):].split('"', 1)[0]
                counts[op] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def cluster_addresses(name):
    """{index: host:port} of `cluster.sh env`'s NAME ("0=host:port 1=host:port ...")."""
    env = run(CLUSTER, "env")
    line = next(l for l in env.splitlines() if l.startswith(f"export {name}="))
    value = line.split("=", 1)[1].strip("'\"")
    return {int(k): v for k, v in (e.split("=", 1) for e in value.split())}


def replicas():
    """{index: host:port} of the running replicas, from `cluster.sh env`."""
    return cluster_addresses("AGGREGATORS")


def start_ingest(target, tokens, prefix, streams, mib):
    return subprocess.Popen([f"{BIN}/ingest_bench", "ingest", target, tokens, prefix, str(streams),
                             str(mib), "0", str(CHUNK), str(WINDOW)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_ingest(proc):
    """ingest_bench's figures, capture ids and its CPU seconds (rusage at exit)."""
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = out.splitlines()
    if not lines or proc.returncode != 0:
        raise RuntimeError(f"ingest_bench failed ({proc.returncode}): {out[:300]} {err[:500]}")
    head = lines[0].split()
    stats = dict(zip(head[0::2], head[1::2]))
    return {"bytes": int(stats["acked_bytes"]), "mbps": float(stats["mbps"]),
            "seconds": float(stats["seconds"]), "retries": int(stats["retries"]),
            "ids": [l.split()[1] for l in lines[1:] if l.startswith("capture ")],
            "cpu": ru.ru_utime + ru.ru_stime}


def data_objects(s3, ids):
    """Count and total size of the data objects of captures IDS."""
    n = total = 0
    for cid in ids:
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=f"{STORE_PREFIX}/data/{cid}/"):
            for o in page.get("Contents", []):
                n += 1
                total += o["Size"]
    return n, total


def put_peer_run(tag, size, count, threads):
    out = run(sys.executable, os.path.abspath(__file__), "put-peer", ENDPOINT, CREDENTIALS,
              f"peer/{tag}", str(size), str(count), str(threads))
    f = out.split()
    stats = dict(zip(f[0::2], f[1::2]))
    return float(stats["mbps"]), float(stats["cpu"])


def fig1(s3, tokens, target):
    store_pid, agg_pid = pid_of("object-store"), pid_of("aggregator-0")
    rows = []
    for label, prefix, streams, mib in (("1 agent", "bench-one", 1, ONE_MIB),
                                        ("10 agents", "bench-ten-", 10, TEN_MIB)):
        log(f"figure 1: {label}, {streams} x {mib} MiB against {target}")
        perf = [subprocess.Popen(["perf", "record", "-q", "-F", "999", "-p", str(pid), "-o",
                                  f"{PERF_DIR}/{name}-{streams}.data"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, pid in (("aggregator", agg_pid), ("versitygw", store_pid))
                if PERF_DIR]
        c_agg, c_store = cpu_seconds(agg_pid), cpu_seconds(store_pid)
        r = finish_ingest(start_ingest(target, tokens, prefix, streams, mib))
        for p in perf:
            p.send_signal(signal.SIGINT)
            p.wait(30)
        c_agg, c_store = cpu_seconds(agg_pid) - c_agg, cpu_seconds(store_pid) - c_store
        n, size = data_objects(s3, r["ids"])
        mean = size // max(n, 1)
        log(f"figure 1: botocore, {n} objects of {mean} B, {streams} thread(s)")
        c_store_peer = cpu_seconds(store_pid)
        peer, peer_cpu = put_peer_run(f"{streams}", mean, n, streams)
        c_store_peer = cpu_seconds(store_pid) - c_store_peer
        rows.append((label, streams, r, n, size, mean, peer, c_agg, c_store, peer_cpu, c_store_peer))
    print(f"figure 1: object-store ingest against one replica (uplink-sized chunks <= {CHUNK} B of "
          f"1 MB ring files, window {WINDOW >> 20} MiB, acknowledged bytes) vs botocore PUTting "
          f"the aggregator's object count and mean size to the same versitygw")
    for label, streams, r, n, size, mean, peer, c_agg, c_store, peer_cpu, c_store_peer in rows:
        mb = r["bytes"] / 1e6
        print(f"  {label:9s}: aggregator {r['mbps']:6.1f} MB/s   botocore {peer:6.1f} MB/s "
              f"({streams} thread(s))   ratio {r['mbps'] / peer:.2f}   hellos retried {r['retries']}")
        print(f"             data objects {n}, mean {mean / 1e6:.3f} MB ({n / max(size / 1e6, 1e-9):.2f} "
              f"objects per MB stored, {size} B stored of {r['bytes']} B acked)")
        print(f"             CPU s per MB: aggregator {c_agg / mb:.4f} ({c_agg:.2f} s), versitygw "
              f"{c_store / mb:.4f}, ingest_bench {r['cpu'] / mb:.4f}; with botocore: botocore "
              f"{peer_cpu / mb:.4f}, versitygw {c_store_peer / mb:.4f}")
        results.append((f"ingest MB/s, {label}", f"{r['mbps']:.1f}",
                        f"{peer:.1f} (botocore, {mean / 1e6:.2f} MB objects, {streams} threads)",
                        ">= 0.7 x", "meets" if r["mbps"] >= 0.7 * peer else "MISSES",
                        f"{r['mbps'] / peer:.2f}"))
        results.append((f"objects per MB, {label}", f"{n / max(size / 1e6, 1e-9):.2f}",
                        f"{n} objects, mean {mean} B", "", "", ""))


def scale_run(tokens, label, prefixes, targets, n_replicas):
    """Three ingest_bench processes (10 streams each) against TARGETS; total MB/s and CPU/MB."""
    pids = [pid_of(f"aggregator-{i}") for i in range(n_replicas)]
    store_pid = pid_of("object-store")
    c_agg = sum(cpu_seconds(p) for p in pids)
    c_store = cpu_seconds(store_pid)
    t0 = time.perf_counter()
    procs = []
    for prefix, target in zip(prefixes, targets):
        procs.append(start_ingest(target, tokens, prefix, SCALE_STREAMS, SCALE_MIB))
        time.sleep(STAGGER)
    rs = [finish_ingest(p) for p in procs]
    wall = time.perf_counter() - t0
    c_agg = sum(cpu_seconds(p) for p in pids) - c_agg
    c_store = cpu_seconds(store_pid) - c_store
    acked = sum(r["bytes"] for r in rs)
    return {"label": label, "replicas": n_replicas, "mbps": acked / wall / 1e6, "wall": wall,
            "mb": acked / 1e6, "agg_cpu": c_agg, "store_cpu": c_store,
            "gen_cpu": sum(r["cpu"] for r in rs), "per_proc": [r["mbps"] for r in rs],
            "retries": sum(r["retries"] for r in rs)}


def fig2(s3, tokens):
    streams = SCALE_PROCS * SCALE_STREAMS
    one = replicas()
    log(f"figure 2: 1 replica, {SCALE_PROCS} x {SCALE_STREAMS} streams x {SCALE_MIB} MiB")
    r1 = scale_run(tokens, "1 replica", [f"bench-r1p{k}-" for k in range(SCALE_PROCS)],
                   [one[0]] * SCALE_PROCS, 1)
    log("figure 2: up --aggregators 3")
    run(CLUSTER, "up", "--object-store", "--aggregators", "3", "--nodes", "1")
    three = replicas()
    if sorted(three) != [0, 1, 2]:
        raise RuntimeError(f"expected replicas 0..2, got {three}")
    log(f"figure 2: 3 replicas, one process of {SCALE_STREAMS} streams per replica")
    r3 = scale_run(tokens, "3 replicas", [f"bench-r3p{k}-" for k in range(SCALE_PROCS)],
                   [three[k] for k in range(SCALE_PROCS)], 3)
    # What three replicas cost with no stream at all: each polls the catalog (every capture
    # of this run is in it) every --catalog_poll_interval.
    pids = [pid_of(f"aggregator-{i}") for i in range(3)]
    c_idle = sum(cpu_seconds(p) for p in pids)
    time.sleep(IDLE_SECONDS)
    c_idle = sum(cpu_seconds(p) for p in pids) - c_idle
    captures = sum(1 for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{STORE_PREFIX}/catalog/") for o in page.get("Contents", [])
        if not o["Key"].startswith(f"{STORE_PREFIX}/catalog/counts/"))
    print(f"figure 2: scaling, {streams} streams x {SCALE_MIB} MiB in {SCALE_PROCS} ingest_bench "
          f"processes of {SCALE_STREAMS} (one replica: all against it; three: one process per "
          f"replica); MB/s = all acked bytes over the wall time from the first start to the last "
          f"end; CPU summed over the replica processes")
    for r in (r1, r3):
        mb = r["mb"]
        print(f"  {r['label']:10s}: total {r['mbps']:6.1f} MB/s ({mb:.0f} MB in {r['wall']:.1f} s; "
              f"per process {', '.join(f'{x:.1f}' for x in r['per_proc'])})   CPU s per MB: "
              f"replicas {r['agg_cpu'] / mb:.4f} ({r['agg_cpu']:.1f} s), versitygw "
              f"{r['store_cpu'] / mb:.4f}, ingest_bench {r['gen_cpu'] / mb:.4f}   hellos retried "
              f"{r['retries']}")
    print(f"  3 / 1 replicas: throughput {r3['mbps'] / r1['mbps']:.2f} x, replica CPU per MB "
          f"{(r3['agg_cpu'] / r3['mb']) / (r1['agg_cpu'] / r1['mb']):.2f} x  "
          f"({os.cpu_count()} cores for replicas, versitygw, load generators, etcd, kube-apiserver)")
    print(f"  idle, 3 replicas, {captures} captures in the catalog: {c_idle:.2f} CPU s over "
          f"{IDLE_SECONDS} s ({100 * c_idle / IDLE_SECONDS:.1f} % of a core, all replicas)")
    for r in (r1, r3):
        results.append((f"30 streams, {r['label']}: MB/s", f"{r['mbps']:.1f}",
                        f"replica CPU {1000 * r['agg_cpu'] / r['mb']:.2f} ms/MB, versitygw "
                        f"{1000 * r['store_cpu'] / r['mb']:.2f} ms/MB", "printed", "", ""))


# What a replica over an object store asks agents for by default (--agent_batch_bytes -1,
# --agent_batch_delay 1s); the null writer's welcome asks for the same in figure 3.
REPLICA_BATCHING = (256 << 10, 1000)


def start_perf(pid, name):
    """`perf record` of the whole machine with call graphs into PERF_DIR/<name>-pid<pid>.data
    while pid runs; returns (the recorder, the profile, pid), or None without PERF_DIR."""
    if not PERF_DIR:
        return None
    profile = f"{PERF_DIR}/{name}-pid{pid}.data"
    # The -c opt binaries have no frame pointers: DWARF unwinding (8 KiB of stack per sample).
    return (subprocess.Popen(["perf", "record", "-q", "--call-graph", "dwarf,8192", "-F", "199",
                              "-a", "-o", profile],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), profile, pid)


def stop_perf(perf):
    """Ends a recording of start_perf; returns [profile, pid] for perf_breakdown.py, or []."""
    if perf is None:
        return []
    recorder, profile, pid = perf
    recorder.send_signal(signal.SIGINT)
    recorder.wait(30)
    return [profile, str(pid)]


def fig3(tokens, target):
    """Figure 4's load (100 slow agents) against replica 0, beside the null putter (PUTs each
    batch as one object to the same versitygw through the same S3 client, acks after the PUT:
    no index, catalog, leases or compaction) PAIRS times each, alternating, and the null writer
    (local files) once. Every welcome asks for the batching a replica asks of agents."""
    mib = max(1, (MANY_KIBPS * MANY_SECONDS + 1023) // 1024)
    log(f"figure 3: {MANY} streams x {MANY_KIBPS} KiB/s, {mib} MiB each, against {target}, "
        f"{PAIRS} pairs")
    agg_pid, store_pid = pid_of("aggregator-0"), pid_of("object-store")
    store_cpu = {"replica": [], "null putter": []}
    # Lease requests to the API server during each run: the replica's for the 100 nodes
    # (and its own), plus the cluster's background (the idle replica's node-a, which
    # the putter's runs show alone).
    leases = {"replica": [], "null putter": []}
    # The replica's object store requests during each of its runs (the null putter's are
    # one PUT per acknowledged batch).
    requests = []
    profiles = {"replica": [], "null putter": []}  # [profile, pid] per pair

    def with_store_cpu(name, measure):
        c_store, l_before = cpu_seconds(store_pid), lease_requests()
        m = measure()
        store_cpu[name].append(cpu_seconds(store_pid) - c_store)
        l_after = lease_requests()
        leases[name].append({v: n - l_before.get(v, 0) for v, n in l_after.items()
                             if n > l_before.get(v, 0)})
        return m

    def measure_putter(i):
        putter = NullServer(putter=(ENDPOINT, CREDENTIALS, BUCKET, f"bench-null-putter/{i}"),
                            batching=REPLICA_BATCHING)
        perf = start_perf(putter.pid, f"putter-many-{i + 1}")
        try:
            return with_store_cpu("null putter",
                                  lambda: measure_many(putter.addr, tokens, putter.pid))
        finally:
            profiles["null putter"].append(stop_perf(perf))
            putter.stop()

    def measure_replica(i):
        perf = start_perf(agg_pid, f"replica-many-{i + 1}")
        r_before = object_requests()
        try:
            return with_store_cpu("replica", lambda: measure_many(target, tokens, agg_pid))
        finally:
            profiles["replica"].append(stop_perf(perf))
            r_after = object_requests()
            requests.append({op: n - r_before.get(op, 0) for op, n in r_after.items()
                             if n > r_before.get(op, 0)})

    replicas, putters = paired_runs(measure_replica, measure_putter)
    writer_dir = f"{STATE}/bench-scratch/null-writer"
    writer = NullServer(writer_dir=writer_dir, batching=REPLICA_BATCHING)
    try:
        w = measure_many(writer.addr, tokens, writer.pid)
    finally:
        writer.stop()
        clear_dir(writer_dir)
    print(f"figure 3: {MANY} concurrent streams, each {MANY_KIBPS} KiB/s, {mib} MiB each "
          f"(~{MANY_SECONDS} s), against replica 0 over versitygw and the null putter, {PAIRS} "
          f"times each, alternating; every welcome asks for batches of {REPLICA_BATCHING[0]} B "
          f"or {REPLICA_BATCHING[1]} ms, which the load generator honours as agents do")
    ratio, after, steady = print_pairs("replica", replicas, putters, peer="null putter")
    a_cpu = statistics.median(a["cpu"] for a in replicas)
    p_cpu = statistics.median(p["cpu"] for p in putters)
    a_hwm = max(a["hwm"] for a in replicas)
    p_hwm = max(p["hwm"] for p in putters)
    s_agg = statistics.median(store_cpu["replica"])
    s_put = statistics.median(store_cpu["null putter"])
    print(f"  null writer (local files and fdatasync), once: CPU {w['cpu']:5.2f} s over "
          f"{w['wall']:4.1f} s, VmHWM {w['hwm']:5.1f} MiB, acked {w['acked']} B in {w['acks']} "
          f"chunks")
    print(f"  medians: replica CPU {a_cpu:.2f} s, null putter {p_cpu:.2f} s; ratio of each pair, "
          f"median {ratio:.2f} ({after:.2f} after the last welcome); versitygw CPU {s_agg:.2f} s "
          f"serving the replica, {s_put:.2f} s the null putter (not included); replica VmHWM "
          f"{a_hwm:.1f} MiB (process lifetime)")
    for name in ("replica", "null putter"):
        print(f"  Lease requests to the API server during the {name}'s runs (all clients): " +
              "; ".join(", ".join(f"{v} {n}" for v, n in sorted(c.items())) or "none"
                        for c in leases[name]))
    print("  object store requests of the replica during its runs: " +
          "; ".join(", ".join(f"{op} {n}" for op, n in sorted(c.items())) for c in requests) +
          f" (the null putter: PUT {putters[0]['acks']} each run, one per batch)")
    for i, (a, p) in enumerate(zip(profiles["replica"], profiles["null putter"])):
        if a and p:
            print(f"  pair {i + 1}, CPU by part of the ingest path (perf samples):", flush=True)
            subprocess.run([sys.executable, f"{os.path.dirname(os.path.abspath(__file__))}/"
                            "perf_breakdown.py"] + a + p, check=False)
    results.append(("100 streams: replica CPU s (median)", f"{a_cpu:.2f}",
                    f"{p_cpu:.2f} null putter; {w['cpu']:.2f} null writer", "<= 1.3 x putter",
                    "meets" if ratio <= 1.3 else "MISSES", f"{ratio:.2f}"))
    if steady is not None:
        results.append(("100 streams, steady state: CPU/s ratio", f"{steady:.2f} x",
                        "null putter", "<= 1.3 x putter",
                        "meets" if steady <= 1.3 else "MISSES", f"{steady:.2f}"))
    results.append(("100 streams: replica peak RSS MiB", f"{a_hwm:.1f}",
                    f"{p_hwm:.1f} null putter", "<= 200 MiB",
                    "meets" if a_hwm <= 200 else "MISSES", ""))


def main():
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores (load generator, replicas, versitygw, etcd and "
          f"kube-apiserver share them), load average {load[0]:.2f} at the start")
    scratch = f"{STATE}/bench-scratch"
    os.makedirs(scratch, exist_ok=True)
    tokens = f"{scratch}/tokens"
    names = []
    if "1" in FIGURES:
        names += ["bench-one"] + [f"bench-ten-{i}" for i in range(10)]
    if "2" in FIGURES:
        names += [f"bench-r{r}p{k}-{i}" for r in (1, 3) for k in range(SCALE_PROCS)
                  for i in range(SCALE_STREAMS)]
    if "3" in FIGURES:
        names += [f"bench-many-{i}" for i in range(MANY)]
    log(f"creating {len(names)} nodes, their agents' stand-in Pods and tokens")
    create_nodes(names, tokens)
    s3 = s3_client(ENDPOINT, CREDENTIALS, 4)
    if "1" in FIGURES:
        fig1(s3, tokens, replicas()[0])
        print()
    if "3" in FIGURES:
        # Before figure 2, which grows the cluster to three replicas.
        fig3(tokens, replicas()[0])
        print()
    if "2" in FIGURES:
        fig2(s3, tokens)
    print()
    print_table(("figure", "aggregator", "peer (same run)", "target", "", "ratio"), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

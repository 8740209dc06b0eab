#!/usr/bin/env python3
"""Where a process spent its CPU in a `perf record -a --call-graph dwarf` profile, by part
of the ingest path, so the benchmark can print a replica and its null peer side by side.

  perf_breakdown.py PROFILE PID [PROFILE PID ...]

Each sample of PID is counted once, under the first part (in the order of PARTS) that a
frame of its stack names; samples naming none are "other". A profile recorded with
`perf record -p` misses threads started after it; record system-wide (-a) and filter here.
"""
import os
import re
import subprocess
import sys

# (part, pattern over the sample's symbol names). Order matters: a Lease renewal's HTTPS
# request counts as the renewal, a catalog entry's PUT as the catalog, and any other PUT
# (a batch's, or one whose stack was cut before its caller) as an S3 PUT.
PARTS = [
    ("lease renewals and takeovers", r"NodeLeases::"),
    ("catalog writes, polls", r"WriteCatalog|FlushCatalog|ObjectCatalog::"),
    ("compaction", r"Compact"),
    ("S3 PUTs (signing, curl)", r"S3Client::|S3Http::"),
    ("ingest path (cut, batch, ack)",
     r"IngestServiceImpl|AppendBatch|Strand::|PoolQueue::|WriterReport::"),
    ("gRPC timer", r"timer_thread|run_some_expired_timers"),
    ("gRPC polling, transport", r"pollset_work|epoll_wait|grpc_|grpc::"),
]


def breakdown(profile, pid):
    """{part: samples} for PID in PROFILE."""
    out = subprocess.run(["perf", "script", "-i", profile, "--pid", str(pid), "-F", "ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    counts = {name: 0 for name, _ in PARTS}
    counts["other"] = 0
    for sample in out.split("\n\n"):
        if not sample.strip():
            continue
        part = next((name for name, pattern in PARTS if re.search(pattern, sample)), "other")
        counts[part] += 1
    return counts


def main(argv):
    if len(argv) < 3 or len(argv) % 2 == 0:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    columns = [(argv[i], breakdown(argv[i], argv[i + 1])) for i in range(1, len(argv), 2)]
    width = max(len(name) for name, _ in PARTS)
    labels = [re.sub(r"(-pid\d+)?\.data$", "", os.path.basename(p)) for p, _ in columns]
    print(f"  {'perf samples':<{width}}" + "".join(f"  {label[:18]:>18}" for label in labels))
    for name in [n for n, _ in PARTS] + ["other"]:
        cells = "".join(f"  {c[name]:>9} ({100 * c[name] / max(1, sum(c.values())):2.0f} %)"
                        for _, c in columns)
        print(f"  {name:<{width}}{cells}")
    print(f"  {'all':<{width}}" + "".join(f"  {sum(c.values()):>9}       " for _, c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

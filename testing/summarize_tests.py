#!/usr/bin/env python3
"""Counts test cases from a `bazel test` run: prints "N passed, N failed".

Reads Bazel's per-target summary lines from the log given as argv[1] and, for
each target, the test cases in its test.xml under the testlogs directory
(argv[2]). A target without a readable test.xml counts as one case with the
target's own status, so a test that failed to build is never lost.
Exit status 0 only when nothing failed and at least one case ran.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

# "//pkg:target   (cached) PASSED in 0.1s"; "(1/2 cached)" when some attempts, shards or
# runs came from the cache.
SUMMARY = re.compile(r"^(//\S+)\s+(?:\((?:\d+/\d+ )?cached\) )?(PASSED|FAILED|TIMEOUT|FLAKY|"
                     r"NO STATUS|FAILED TO BUILD|INCOMPLETE|SKIPPED)\b")


def cases_from_xml(path):
    tree = ET.parse(path)
    passed = failed = 0
    for case in tree.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None or case.get("result") == "suppressed":
            continue
        else:
            passed += 1
    return passed, failed


def main():
    log, testlogs = sys.argv[1], sys.argv[2]
    passed = failed = 0
    with open(log, errors="replace") as f:
        for line in f:
            m = SUMMARY.match(line.strip())
            if not m:
                continue
            target, status = m.groups()
            if status == "SKIPPED":
                continue
            pkg, name = target[2:].split(":", 1)
            xml = os.path.join(testlogs, pkg, name, "test.xml")
            p = fl = 0
            if status in ("PASSED", "FAILED", "FLAKY", "TIMEOUT") and os.path.exists(xml):
                try:
                    p, fl = cases_from_xml(xml)
                except ET.ParseError:
                    p, fl = 0, 0
            if p + fl == 0:
                p, fl = (1, 0) if status in ("PASSED", "FLAKY") else (0, 1)
            elif status not in ("PASSED", "FLAKY") and fl == 0:
                fl = 1  # the target failed outside its test cases (crash, timeout)
            print(f"{target}: {p} passed, {fl} failed", file=sys.stderr)
            passed += p
            failed += fl
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

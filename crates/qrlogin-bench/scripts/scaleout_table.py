#!/usr/bin/env python3
"""The scale-out table (BENCHMARKS.md) from measure.sh scaleout reports.

Usage: scaleout_table.py DIR [DIR ...]   each DIR holding
scaleout-<transport>-n<N>[-elsewhere].json (and, for the cluster,
….cluster.json from cluster_stats.py). Prints one Markdown row per report:
hint messages per login (all instances; of them for logins nobody waited
on there; the most any one instance received), server CPU per login (all
instances), Redis publishes and bytes out (one Redis) or Redis CPU and
cluster-bus publish messages (cluster) per login, wake p50/p99.
Standard library only."""
import glob
import json
import os
import re
import sys


def f(x, nd=2):
    return "–" if x is None else f"{x:,.{nd}f}"


def rows(d):
    out = []
    for p in glob.glob(os.path.join(d, "scaleout-*.json")):
        if p.endswith(".cluster.json"):
            continue
        m = re.match(r"scaleout-(\w+)-n(\d+)(-elsewhere)?\.json$", os.path.basename(p))
        if not m:
            continue
        t, n, elsewhere = m.group(1), int(m.group(2)), bool(m.group(3))
        r = json.load(open(p))
        h = r.get("hints") or {}
        inst = r.get("instances") or []
        most = max((i.get("hint_messages_per_login") or 0 for i in inst), default=None)
        cpu = sum(i.get("cpu_us_per_login") or 0 for i in inst) if inst else None
        ps = r.get("redis_pubsub") or {}
        cl = {}
        cp = p[:-5] + ".cluster.json"
        if os.path.exists(cp):
            cl = json.load(open(cp))
        if cl:
            pubs = (cl.get("publish_per_login") or 0) + (cl.get("spublish_per_login") or 0)
            redis = f"{f(pubs)} pub, {f(cl.get('redis_cpu_us_per_login'), 0)} µs CPU, " \
                    f"{f(cl.get('bus_publish_sent_per_login'))} bus msgs"
        else:
            redis = f"{f(ps.get('publishes_per_login'))} pub, {f(ps.get('net_output_bytes_per_login'), 0)} B out"
        w = r["steps"]["wake"]
        out.append(((t, elsewhere, n, d), "| {} | {} | {}{} | {} / {} | {} | {} | {} | {} | {} | {} / {} | {} |".format(
            os.path.basename(os.path.normpath(d)), t, n, " (wait elsewhere)" if elsewhere else "",
            r["completed"], r["failed"], f(h.get("per_login")), f(h.get("unwatched_per_login")),
            f(most), f(cpu, 0), redis, f(w["p50_ms"], 3), f(w["p99_ms"], 2), f(r.get("window_logins_per_s"), 0))))
    return out


def main():
    print("| build | Redis | instances | logins / failed | hint msgs per login | of them unwatched | most on one instance | server CPU µs/login (all) | Redis per login | wake p50 / p99 ms | logins/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    all_rows = []
    for d in sys.argv[1:]:
        all_rows += rows(d)
    order = {"unix": 0, "tcp": 1, "cluster": 2}
    for _, line in sorted(all_rows, key=lambda x: (order.get(x[0][0], 9), x[0][1], x[0][2], x[0][3])):
        print(line)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Sums a scale-out run's per-node Redis Cluster snapshots (measure.sh
scaleout, TRANSPORT=cluster) into per-login figures.

Usage: cluster_stats.py OUT/scaleout-cluster-nN   (reads
OUT/scaleout-cluster-nN.node<port>.{before,after}.txt and the run's JSON
report OUT/scaleout-cluster-nN.json for the number of logins). Prints JSON.
Standard library only."""
import glob
import json
import re
import sys


def parse(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if ":" not in line or line.startswith("#"):
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def calls(info, cmd):
    m = re.search(r"calls=(\d+)", info.get(f"cmdstat_{cmd}", ""))
    return int(m.group(1)) if m else 0


def num(info, k):
    try:
        return float(info.get(k, "0"))
    except ValueError:
        return 0.0


def main():
    base = sys.argv[1]
    report = json.load(open(base + ".json"))
    logins = report.get("completed") or report.get("logins") or 0
    nodes = sorted({p.rsplit(".", 2)[0] for p in glob.glob(base + ".node*.before.txt")})
    tot = {"publish": 0, "spublish": 0, "cpu_s": 0.0, "net_out": 0, "bus_publish_sent": 0,
           "bus_publishshard_sent": 0, "bus_messages_sent": 0}
    for n in nodes:
        b, a = parse(n + ".before.txt"), parse(n + ".after.txt")
        tot["publish"] += calls(a, "publish") - calls(b, "publish")
        tot["spublish"] += calls(a, "spublish") - calls(b, "spublish")
        cpu = lambda i: num(i, "used_cpu_sys") + num(i, "used_cpu_user")
        tot["cpu_s"] += cpu(a) - cpu(b)
        tot["net_out"] += int(num(a, "total_net_output_bytes") - num(b, "total_net_output_bytes"))
        for key, field in (("bus_publish_sent", "cluster_stats_messages_publish_sent"),
                           ("bus_publishshard_sent", "cluster_stats_messages_publishshard_sent"),
                           ("bus_messages_sent", "cluster_stats_messages_sent")):
            tot[key] += int(num(a, field) - num(b, field))
    per = {k + "_per_login": (v / logins if logins else None) for k, v in tot.items()}
    per["redis_cpu_us_per_login"] = tot["cpu_s"] * 1e6 / logins if logins else None
    print(json.dumps({"nodes": len(nodes), "logins": logins, "totals": tot, **per}, indent=2))


if __name__ == "__main__":
    main()

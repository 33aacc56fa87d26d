#!/usr/bin/env python3
"""Markdown tables from the JSON reports measure.sh writes.

    crates/qrlogin-bench/scripts/summarize.py RESULTS_DIR
"""
import json
import pathlib
import sys


def f(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def phone(r):
    """demo, or e.g. "jwt RS256 per-login" (reports before --phone-auth: demo)."""
    if r.get("phone_auth", "demo") == "demo":
        return "demo"
    return f"jwt {r.get('phone_token_alg') or '?'} {r.get('phone_tokens')}"


def main(d):
    runs, idles = [], []
    for p in sorted(pathlib.Path(d).glob("*.json")):
        r = json.loads(p.read_text())
        (idles if "waiters_open" in r else runs).append((p.stem, r))
    if runs:
        print("| run | store | phone | wait | conc. | rate | logins/s (window) | logins/s (incl. drain) | errors | wake p50 | wake p99 | wake p99.9 | full p50 | full p99 | "
              "status req/login | Redis cmds/login | Redis client cmds/login | CPU µs/login server / redis / bench | other processes (cores) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in runs:
            s = r["steps"]
            w, full = s.get("wake", {}), s.get("full", {})
            red = r.get("redis")
            mon = r.get("redis_monitor")
            cpu = r.get("cpu", {})
            store = "redis" if red else "memory"
            print(
                f"| {name} | {store} | {phone(r)} | {r['wait']} | {r['concurrency']} | {r['rate'] or '–'} | "
                f"{r.get('window_logins_per_s', 0):.0f} | {r['logins_per_s']:.0f} | {sum(r['errors'].values())} | "
                f"{f(w.get('p50_ms'), 3)} | {f(w.get('p99_ms'), 3)} | {f(w.get('p999_ms'), 3)} | "
                f"{f(full.get('p50_ms'))} | {f(full.get('p99_ms'))} | "
                f"{f(r['status_requests_per_login']) if r['wait'] != 'sse' else '–'} | "
                f"{f(red['per_login']) if red else '–'} | {f(mon['client_per_login']) if mon else '–'} | "
                f"{f(cpu.get('server_us_per_login'), 0)} / {f(cpu.get('redis_us_per_login'), 0)} / "
                f"{f(cpu.get('bench_us_per_login'), 0)} | "
                f"{f(cpu['other_s'] / r['elapsed_s'] if cpu.get('other_s') is not None else None)} |"
            )
    if any(r.get("phone_auth") == "jwt" for _, r in runs):
        # Server CPU per login by store and phone credential, every run
        # (in file order) and their mean: the demo-vs-jwt comparison.
        groups = {}
        for name, r in runs:
            store = "redis" if r.get("redis") else "memory"
            label = phone(r) + (" (experiment binary)" if "-exp-" in name else "")
            groups.setdefault((store, label), []).append(r)
        print()
        print("| store | phone | runs | server CPU µs/login, each run | mean | vs demo | logins/s (window), each run |")
        print("|---|---|---|---|---|---|---|")
        for (store, ph), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "demo", kv[0][1])):
            cpu = [x["cpu"]["server_us_per_login"] for x in rs if x["cpu"].get("server_us_per_login")]
            mean = sum(cpu) / len(cpu) if cpu else None
            demo = groups.get((store, "demo"))
            dcpu = [x["cpu"]["server_us_per_login"] for x in demo or [] if x["cpu"].get("server_us_per_login")]
            dmean = sum(dcpu) / len(dcpu) if dcpu else None
            vs = f"{100 * (mean / dmean - 1):+.1f} %" if mean and dmean and ph != "demo" else "–"
            print(
                f"| {store} | {ph} | {len(rs)} | {' / '.join(f'{c:.0f}' for c in cpu)} | {f(mean, 0)} | {vs} | "
                f"{' / '.join(str(round(x.get('window_logins_per_s', 0))) for x in rs)} |"
            )
    scale = [(n, r) for n, r in runs if r.get("hints") or len(r.get("instances", [])) > 1]
    if scale:
        # Multi-instance runs (measure.sh scaleout): hint fan-out and CPU
        # per login against the number of instances. "each" lists the
        # instances in --url order; per-login figures are over all logins,
        # so the instances' add up to the total.
        print()
        print("| run | instances | rate | logins/s (window) | errors | hint msgs/login | each instance | unwatched/login | "
              "server CPU µs/login | each instance | Redis publishes/login | Redis bytes out/login | Redis CPU µs/login | wake p50 | wake p99 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in scale:
            inst = r.get("instances", [])
            h = r.get("hints") or {}
            ps = r.get("redis_pubsub") or {}
            cpu = r.get("cpu", {})
            w = r["steps"].get("wake", {})
            each = lambda k, nd: " / ".join(f(i.get(k), nd) for i in inst)
            print(
                f"| {name} | {len(inst)} | {r['rate'] or '–'} | {r.get('window_logins_per_s', 0):.0f} | {sum(r['errors'].values())} | "
                f"{f(h.get('per_login'))} | {each('hint_messages_per_login', 2)} | {f(h.get('unwatched_per_login'))} | "
                f"{f(cpu.get('server_us_per_login'), 0)} | {each('cpu_us_per_login', 0)} | "
                f"{f(ps.get('publishes_per_login'))} | {f(ps.get('net_output_bytes_per_login'), 0)} | "
                f"{f(cpu.get('redis_us_per_login'), 0)} | {f(w.get('p50_ms'), 3)} | {f(w.get('p99_ms'), 3)} |"
            )
    if idles:
        print()
        print("| run | waiters open | RSS before (KiB) | with logins | with waiters | bytes/waiter | bytes/(login+waiter) |")
        print("|---|---|---|---|---|---|---|")
        for name, r in idles:
            print(
                f"| {name} | {r['waiters_open']} | {r['rss_before']['rss_kb']} | {r['rss_with_logins']['rss_kb']} | "
                f"{r['rss_with_waiters_kb']} | {r['bytes_per_waiter']:.0f} | {r['bytes_per_login_and_waiter']:.0f} |"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results")

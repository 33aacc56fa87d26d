#!/usr/bin/env python3
"""The soak's pass/fail verdict (issue 13), from measure.sh OUT soak.

Usage: soak_check.py DIR   with DIR holding soak.json (qrlogin-bench soak),
soak-restart.json (when Redis was killed and restarted), soak-redis.json
(Redis at the end and after expiry) and soak-capacity.json. Prints the
figures and one line per criterion, writes DIR/soak-check.json, and exits 1
when a criterion fails. Standard library only.

The restart window runs from the kill (soak-restart.json) to the first login
step sent after the probe saw Redis go away that succeeded (soak.json
outages[].first_success_ms). A per-second bucket [t, t+1) is inside the
window when it overlaps it (the timeline's resolution is one second).

Criteria:
- restart observed: the probe saw an outage that covers the kill, and a
  step succeeded after it;
- errors only 503 and only inside the window: every error (a step that
  failed for good) is a 503, in a bucket inside the window; every retried
  503 too (a 503 outside the window means the store was unavailable when it
  should not have been);
- SSE streams ended early by the server only inside the window (it ends
  them when the store fails);
- no login approved or redeemed twice: double_approve = double_redeem = 0,
  with every login checked;
- RSS flat after warm-up, per instance: warm-up is the first WARMUP_S
  seconds (60, or a fifth of a shorter run); the samples after it are cut
  in thirds by time, and the last third's maximum must be at most the first
  third's maximum x 1.10;
- 0 keys without a TTL at the end, and DBSIZE 0 once the longest PTTL left
  at the end has run out (plus Redis's active expiry, soak-redis.json
  expiry_grace_s). A TTL longer than measure.sh's MAX_EXPIRY_WAIT is not
  waited for: the DBSIZE-0 criterion is then not met (it says which keys);
- every key whose TTL at the end was within the wait is gone after it (the
  keys left are exactly those beyond it)."""
import json
import os
import sys

FLAT = 1.10


def load(d, name):
    with open(os.path.join(d, name)) as f:
        return json.load(f)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    r = load(d, "soak.json")
    rs = load(d, "soak-restart.json")
    red = load(d, "soak-redis.json")
    cap = load(d, "soak-capacity.json")
    t0 = r["start_unix_ms"]
    killed = rs["killed_unix_ms"] - t0
    # The outage the kill caused: the first one seen at or after the kill
    # (the probe notices within a ping).
    outage = next((o for o in r["outages"] if o["down_ms"] >= killed - 1000), None)
    end = outage and outage.get("first_success_ms")
    results = []

    def crit(name, ok, detail):
        results.append({"criterion": name, "pass": bool(ok), "detail": detail})

    crit("restart observed", outage is not None and end is not None,
         f"kill at {killed} ms; outage {outage}")
    win = (killed, end if end is not None else killed)

    def inside(t):
        return t * 1000 < win[1] and (t + 1) * 1000 > win[0]

    bad_errors, bad_503, bad_sse = {}, {}, 0
    for s in r["timeline"]:
        for k, v in s["errors"].items():
            if " 503" not in k or not inside(s["t"]):
                bad_errors[f"t={s['t']} {k}"] = v
        for k, v in s["retried_503"].items():
            if not inside(s["t"]):
                bad_503[f"t={s['t']} {k}"] = v
        if s["sse_ended_early"] and not inside(s["t"]):
            bad_sse += s["sse_ended_early"]
    crit("errors only 503, only inside the restart window", not bad_errors,
         bad_errors or f"{sum(r['errors'].values())} errors, all 503 inside the window")
    crit("retried 503s only inside the restart window", not bad_503,
         bad_503 or f"{sum(r['retried_503'].values())} retried 503s, all inside the window")
    crit("SSE streams ended early only inside the restart window", bad_sse == 0,
         f"{bad_sse} outside, {r['sse_ended_early']} in all")
    # Every login that got past approve was approved again, and every one
    # that got past redeem was redeemed again.
    redeemed = r["completed"] + r["ended_found_done"]
    crit("no double approve",
         r["double_approve"] == 0 and r["approve_again_checked"] >= redeemed > 0,
         f"{r['double_approve']} of {r['approve_again_checked']} checked")
    crit("no double redeem",
         r["double_redeem"] == 0 and r["redeem_again_checked"] == redeemed > 0,
         f"{r['double_redeem']} of {r['redeem_again_checked']} checked ({redeemed} logins redeemed)")

    warmup = min(60.0, r["duration_s"] / 5)
    rss = []
    for i, pid in enumerate(r["server_pids"]):
        pts = [(s["t_s"], s["rss_kb"][i]) for s in r["rss"] if s["rss_kb"][i] is not None]
        after = [p for p in pts if p[0] >= warmup]
        if len(after) < 3:
            crit(f"RSS flat, instance {i + 1}", False, "fewer than 3 samples after warm-up")
            continue
        lo, hi = after[0][0], after[-1][0]
        third = (hi - lo) / 3
        first = max(v for t, v in after if t <= lo + third)
        last = max(v for t, v in after if t >= hi - third)
        rss.append({"instance": i + 1, "pid": pid, "start_kb": pts[0][1], "after_warmup_kb": after[0][1],
                    "end_kb": pts[-1][1], "max_kb": max(v for _, v in pts),
                    "first_third_max_kb": first, "last_third_max_kb": last})
        crit(f"RSS flat, instance {i + 1}", last <= first * FLAT,
             f"last third max {last} KiB <= {FLAT} x first third max {first} KiB after {warmup:.0f} s warm-up")

    end_a, after_a = red["end"], red["after_expiry"]
    crit("0 keys without TTL at the end", end_a["without_ttl"] == 0,
         f"{end_a['without_ttl']} of {end_a['keys']} {end_a['without_ttl_names'] or ''}")
    cap_ms = red["max_expiry_wait_s"] * 1000
    waited_all = end_a["longest_pttl_ms"] <= cap_ms
    crit("DBSIZE 0 after the longest TTL", waited_all and red["dbsize_after_expiry"] == 0,
         (f"{red['dbsize_end']} keys at the end, longest PTTL {end_a['longest_pttl_ms']} ms; "
          f"after {red['waited_s']} s: {red['dbsize_at_longest_ttl']}, "
          f"+{red['expiry_grace_s']} s: {red['dbsize_after_expiry']}")
         + ("" if waited_all else
            f"; NOT MET: the longest TTL is beyond the {red['max_expiry_wait_s']} s the soak waits, "
            f"{end_a['beyond_cap_count']} key(s) not waited for: {end_a['beyond_cap']}"))
    # Whatever could be waited out is gone: what is left is exactly the
    # keys whose TTL at the end was beyond the wait.
    left = after_a["keys"]
    crit("every key with a TTL within the wait expired", left == end_a["beyond_cap_count"],
         f"{left} key(s) left, {end_a['beyond_cap_count']} had a TTL beyond the wait; "
         f"left by kind: { {k: v['count'] for k, v in after_a['kinds'].items()} if left else {} }")

    summary = {
        "capacity_logins_per_s": cap["logins_per_s"],
        "rate": r["rate"],
        "duration_s": r["duration_s"],
        "started": r["started"], "completed": r["completed"], "failed": r["failed"],
        "ended_found_done": r["ended_found_done"],
        "errors": r["errors"], "retried_503": r["retried_503"], "found_done": r["found_done"],
        "sse_ended_early": r["sse_ended_early"],
        "restart_window_ms": {"killed": killed, "restarted": rs["restarted_unix_ms"] - t0,
                              "pong": rs["pong_unix_ms"] - t0,
                              "probe_down": outage and outage["down_ms"],
                              "probe_up": outage and outage.get("redis_up_ms"),
                              "first_success": end,
                              "length": None if end is None else end - killed},
        "double_approve": r["double_approve"], "double_redeem": r["double_redeem"],
        "rss": rss,
        "redis": red,
        "criteria": results,
        "pass": all(c["pass"] for c in results),
    }
    with open(os.path.join(d, "soak-check.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"soak: {r['rate']:.0f} logins/s (capacity {cap['logins_per_s']:.0f}) for {r['duration_s']:.0f} s: "
          f"{r['completed']} completed, {r['failed']} failed, {r['ended_found_done']} ended finding redeem done")
    w = summary["restart_window_ms"]
    print(f"restart window: kill {w['killed']} ms, restarted {w['restarted']}, PONG {w['pong']}, "
          f"first success {w['first_success']} ({w['length']} ms)")
    for c in results:
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['criterion']}: {c['detail']}")
    sys.exit(0 if summary["pass"] else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The charts of BENCHMARKS.md (issue 13), as SVG, from the JSON reports.

Usage (matplotlib pinned in requirements.txt beside this script):

  python3 -m venv crates/qrlogin-bench/scripts/.venv
  crates/qrlogin-bench/scripts/.venv/bin/pip install -r crates/qrlogin-bench/scripts/requirements.txt
  crates/qrlogin-bench/scripts/.venv/bin/python crates/qrlogin-bench/scripts/charts.py \\
      [--scaleout DIR] [--soak DIR]

Defaults: crates/qrlogin-bench/results/2026-12-02-scaleout and
crates/qrlogin-bench/results/2026-12-02-soak. Each chart is written into
the folder its data comes from:

- scale-out (DIR/{before,after}/scaleout-<transport>-n<N>.json, the
  reports scaleout_table.py makes the table from; the wait-elsewhere runs
  are left out): DIR/hints-per-login.svg, hint messages delivered per login
  (all instances) against instances, and DIR/cpu-per-login.svg, server CPU
  per login (summed over the instances, as in the table) against
  instances; before dashed, after solid, one colour per transport;
- soak (DIR/soak.json, soak-restart.json, soak-check.json): DIR/soak-logins.svg,
  logins completed, errors and retried 503s per second (steps: each
  second's bucket [t, t+1)), the restart window (kill to first success)
  shaded, over the whole run and 20 s either side of the window;
  DIR/soak-rss.svg, each instance's RSS.

The SVGs carry no date and fixed ids, so a rerun on the same reports gives
the same files."""
import argparse
import glob
import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
VENV_HINT = ("python3 -m venv crates/qrlogin-bench/scripts/.venv && "
             "crates/qrlogin-bench/scripts/.venv/bin/pip install -r crates/qrlogin-bench/scripts/requirements.txt")

try:
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
except ImportError:
    print("charts.py needs matplotlib (pinned in requirements.txt); install it with\n  " + VENV_HINT +
          "\nand run it with crates/qrlogin-bench/scripts/.venv/bin/python", file=sys.stderr)
    sys.exit(2)

plt.rcParams["svg.hashsalt"] = "qrlogin-charts"
plt.rcParams["svg.fonttype"] = "none"
plt.rcParams["font.size"] = 9
TRANSPORTS = [("unix", "one Redis, unix socket", "tab:blue"),
              ("tcp", "one Redis, TCP loopback", "tab:orange"),
              ("cluster", "3-master Cluster", "tab:green")]


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    print(f"wrote {os.path.relpath(path, ROOT)}")


def scaleout_points(d):
    """{(build, transport): [(N, hints per login, server CPU µs per login)]}"""
    pts = {}
    for build in ("before", "after"):
        for p in glob.glob(os.path.join(d, build, "scaleout-*-n*.json")):
            m = re.match(r"scaleout-(\w+)-n(\d+)\.json$", os.path.basename(p))
            if not m:
                continue
            with open(p) as f:
                r = json.load(f)
            inst = r.get("instances") or []
            cpu = sum(i.get("cpu_us_per_login") or 0 for i in inst) if inst else None
            hints = (r.get("hints") or {}).get("per_login")
            pts.setdefault((build, m.group(1)), []).append((int(m.group(2)), hints, cpu))
    for v in pts.values():
        v.sort()
    return pts


def scaleout(d):
    pts = scaleout_points(d)
    if not pts:
        print(f"no scale-out reports under {d}", file=sys.stderr)
        return
    # The three transports give the same hint counts: on that chart each
    # transport's points are shifted sideways a little (dodge) so that none
    # hides the others.
    for key, ylabel, name, title, dodge in [
            (1, "hint messages delivered per login (all instances)", "hints-per-login.svg",
             "Hint messages per login against instances", 0.04),
            (2, "server CPU µs per login (all instances)", "cpu-per-login.svg",
             "Server CPU per login against instances", 0.0)]:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for k, (t, label, colour) in enumerate(TRANSPORTS):
            for build, style, marker in (("before", "--", "o"), ("after", "-", "s")):
                v = [p for p in pts.get((build, t), []) if p[key] is not None]
                if v:
                    ax.plot([p[0] * (1 + dodge * (k - 1)) for p in v], [p[key] for p in v], style,
                            marker=marker, color=colour, label=f"{label}, {build}")
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8])
        ax.set_xticklabels(["1", "2", "4", "8"])
        ax.set_xlabel("instances")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(title + "\n1,000 logins/s, SSE; before dashed, after solid"
                     + ("\n(points shifted sideways per transport)" if dodge else ""), fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        save(fig, os.path.join(d, name))


def soak(d):
    p = os.path.join(d, "soak.json")
    if not os.path.exists(p):
        print(f"no soak report in {d}", file=sys.stderr)
        return
    with open(p) as f:
        r = json.load(f)
    window = None
    cp = os.path.join(d, "soak-check.json")
    if os.path.exists(cp):
        with open(cp) as f:
            w = json.load(f)["restart_window_ms"]
        if w.get("first_success") is not None:
            window = (w["killed"] / 1000, w["first_success"] / 1000)
    tl = r["timeline"]
    t = [s["t"] for s in tl]
    done = [s["completed"] for s in tl]
    errors = [sum(s["errors"].values()) for s in tl]
    retried = [sum(s["retried_503"].values()) for s in tl]

    # The whole run, and (when the window is known) 20 s either side of
    # the restart window, where a few seconds matter.
    spans = [(None, "the whole run")]
    if window:
        spans.append(((window[0] - 20, window[1] + 20), "around the restart"))
    fig, axes = plt.subplots(1, len(spans), figsize=(7.2 if len(spans) == 1 else 10.5, 3.8),
                             gridspec_kw={"width_ratios": [3, 2][:len(spans)]})
    if len(spans) == 1:
        axes = [axes]
    for ax, (span, what) in zip(axes, spans):
        ax.plot(t, done, color="tab:blue", linewidth=0.8, drawstyle="steps-post", label="logins completed per second")
        ax.set_xlabel("seconds since the start")
        ax.set_ylabel("logins completed per second")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.plot(t, retried, color="tab:orange", linewidth=0.8, drawstyle="steps-post", label="503 answers retried per second")
        ax2.plot(t, errors, color="tab:red", linewidth=1.2, drawstyle="steps-post", label="errors (failed logins) per second")
        ax2.set_ylabel("per second (503s retried, errors)")
        ax2.set_ylim(bottom=0, top=max(1, max(retried + errors)) * 1.1)
        if window:
            ax.axvspan(window[0], window[1], color="grey", alpha=0.3,
                       label=f"restart window ({(window[1] - window[0]):.1f} s: kill to first success)")
        if span:
            ax.set_xlim(*span)
        ax.set_title(what, fontsize=8)
        ax.grid(True, alpha=0.3)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        if span is None:
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    fig.suptitle(f"Soak: {r['rate']:.0f} logins/s offered, {len(r['urls'])} instances, "
                 "Redis killed (-9) and restarted", fontsize=9)
    save(fig, os.path.join(d, "soak-logins.svg"))

    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    for i, pid in enumerate(r["server_pids"]):
        pts = [(s["t_s"], s["rss_kb"][i]) for s in r["rss"] if s["rss_kb"][i] is not None]
        ax.plot([x for x, _ in pts], [v / 1024 for _, v in pts], linewidth=1,
                label=f"instance {i + 1} (pid {pid})")
    if window:
        ax.axvspan(window[0], window[1], color="grey", alpha=0.3, label="restart window")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Soak: resident memory of each instance, sampled every {r['rss_every_s']:g} s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, os.path.join(d, "soak-rss.svg"))


def main():
    res = os.path.join(ROOT, "crates", "qrlogin-bench", "results")
    ap = argparse.ArgumentParser(description="BENCHMARKS.md charts (SVG) from the JSON reports")
    ap.add_argument("--scaleout", default=os.path.join(res, "2026-12-02-scaleout"))
    ap.add_argument("--soak", default=os.path.join(res, "2026-12-02-soak"))
    a = ap.parse_args()
    scaleout(a.scaleout)
    soak(a.soak)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Plots for `ckv bench reprefill --out DIR` (its summary.json), one set per workload and mode:

- ttft_breakdown_<workload>_<mode>.png: TTFT per system and budget, stacked (compute, I/O wait,
  other), each system with its own cache policy;
- speedup_<workload>_<mode>.png: TTFT of each baseline / ContiguousKV vs budget;
- bytes_<workload>_<mode>.png: SSD bytes read and bytes attended per request vs budget;
- length_sweep_<mode>.png (length-sweep): TTFT and speed-up vs prefix length, per budget;
- cache_policies_<workload>.png (warm rows with several cache policies): mean TTFT, SSD bytes
  read and cache hit ratio per system and policy.

    bench/plot_reprefill.py DIR [--png-dir OUT]

Needs matplotlib (Debian: python3-matplotlib; run with /usr/bin/python3).
"""
import argparse
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reprefill_rows import has_own_policy  # noqa: E402

OURS = "contiguouskv"


def shared_budgets(rows):
    """Budgets measured for more than one system (a fine grid run for one system alone, e.g.
    for iso-quality pairs, would crowd the bars)."""
    systems = {r["system"] for r in rows}
    count = defaultdict(set)
    for r in rows:
        count[r["budget"]].add(r["system"])
    return sorted(b for b, s in count.items() if len(s) > 1 or len(systems) == 1)


def own_policy_rows(rows):
    """Each system with its own cache policy (cold rows and recompute have none)."""
    return [r for r in rows if has_own_policy(r)]


def model_name(rows):
    return os.path.basename(rows[0]["model"].rstrip("/"))


def save(fig, out, name):
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    print(os.path.join(out, name))


def breakdown(rows, out, tag, title):
    systems = list(dict.fromkeys(r["system"] for r in rows))
    budgets = shared_budgets(rows)
    by = {(r["system"], r["budget"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        xs = [b_i + i * width for b_i in range(len(budgets))]
        get = lambda b, k: by[(s, b)][k] if (s, b) in by else 0  # noqa: E731
        comp = [get(b, "mean_compute_ms") for b in budgets]
        io = [get(b, "mean_io_wait_ms") for b in budgets]
        other = [max(0.0, get(b, "mean_ttft_ms") - io[j] - comp[j]) for j, b in enumerate(budgets)]
        ax.bar(xs, comp, width, label=f"{s}: compute", color=f"C{i}")
        ax.bar(xs, io, width, bottom=comp, label=f"{s}: I/O wait", color=f"C{i}", alpha=0.45, hatch="//")
        ax.bar(xs, other, width, bottom=[c + w for c, w in zip(comp, io)], color=f"C{i}", alpha=0.2)
    ax.set_xticks([b_i + 0.4 - width / 2 for b_i in range(len(budgets))])
    ax.set_xticklabels([f"{b:g}" for b in budgets])
    ax.set_xlabel("budget r")
    ax.set_ylabel("mean TTFT (ms)")
    ax.set_title(f"TTFT breakdown — {title}", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    save(fig, out, f"ttft_breakdown_{tag}.png")


def speedup(rows, out, tag, title):
    systems = list(dict.fromkeys(r["system"] for r in rows))
    if OURS not in systems:
        return
    budgets = shared_budgets(rows)
    by = {(r["system"], r["budget"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, s in enumerate(systems):
        if s == OURS:
            continue
        pts = [(b, by[(s, b)]["mean_ttft_ms"] / by[(OURS, b)]["mean_ttft_ms"])
               for b in budgets if (s, b) in by and (OURS, b) in by]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"vs {s}", color=f"C{i}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("budget r")
    ax.set_ylabel("TTFT ratio (baseline / ContiguousKV)")
    ax.set_title(f"Speed-up — {title}", fontsize=9)
    ax.legend(fontsize=8)
    save(fig, out, f"speedup_{tag}.png")


def bytes_read(rows, out, tag, title):
    systems = [s for s in dict.fromkeys(r["system"] for r in rows) if s != "recompute"]
    budgets = shared_budgets(rows)
    by = {(r["system"], r["budget"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, s in enumerate(systems):
        pts = [(b, by[(s, b)]["ssd_bytes_read"] / 1e6, by[(s, b)]["attended_bytes"] / 1e6)
               for b in budgets if (s, b) in by]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=f"{s}: read")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], ls="--", color=f"C{i}", alpha=0.6,
                label=f"{s}: attended")
    ax.set_xlabel("budget r")
    ax.set_ylabel("MB per request")
    ax.set_title(f"SSD bytes read vs attended — {title}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    save(fig, out, f"bytes_{tag}.png")


def length_sweep(rows, out, mode):
    budgets = sorted({r["budget"] for r in rows})
    systems = list(dict.fromkeys(r["system"] for r in rows))
    by = {(r["system"], r["budget"], r["prefix_tokens"]): r for r in rows}
    lengths = sorted({r["prefix_tokens"] for r in rows})
    fig, axes = plt.subplots(2, len(budgets), figsize=(4.5 * len(budgets), 7), squeeze=False)
    for j, b in enumerate(budgets):
        ax, sp = axes[0][j], axes[1][j]
        for i, s in enumerate(systems):
            pts = [(n, by[(s, b, n)]["mean_ttft_ms"]) for n in lengths if (s, b, n) in by]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=s)
            if s != OURS:
                ratio = [(n, by[(s, b, n)]["mean_ttft_ms"] / by[(OURS, b, n)]["mean_ttft_ms"])
                         for n in lengths if (s, b, n) in by and (OURS, b, n) in by]
                sp.plot([p[0] for p in ratio], [p[1] for p in ratio], marker="o", color=f"C{i}",
                        label=f"vs {s}")
        for a in (ax, sp):
            a.set_xscale("log", base=2)
            a.set_xlabel("prefix tokens")
        ax.set_yscale("log")
        ax.set_ylabel("mean TTFT (ms)")
        ax.set_title(f"r = {b:g}, {mode}", fontsize=9)
        sp.axhline(1.0, color="grey", lw=0.8)
        sp.set_ylabel("TTFT ratio (baseline / ContiguousKV)")
        ax.legend(fontsize=7)
        sp.legend(fontsize=7)
    fig.suptitle(f"Length sweep — {model_name(rows)}", fontsize=10)
    save(fig, out, f"length_sweep_{mode}.png")


def cache_policies(rows, out, workload):
    keys = list(dict.fromkeys((r["system"], r["cache_policy"]) for r in rows))
    budgets = sorted({r["budget"] for r in rows})
    by = {(r["system"], r["cache_policy"], r["budget"]): r for r in rows}
    fig, (a1, a3, a2) = plt.subplots(1, 3, figsize=(16, 4.5))
    width = 0.8 / len(keys)
    for i, (s, p) in enumerate(keys):
        xs = [b_i + i * width for b_i in range(len(budgets))]
        t = [by[(s, p, b)]["mean_ttft_ms"] if (s, p, b) in by else 0 for b in budgets]
        h = [by[(s, p, b)]["cache_hit_ratio"] if (s, p, b) in by else 0 for b in budgets]
        mb = [by[(s, p, b)]["ssd_bytes_read"] / 1e6 if (s, p, b) in by else 0 for b in budgets]
        a1.bar(xs, t, width, color=f"C{i}", label=f"{s} / {p}")
        a2.bar(xs, h, width, color=f"C{i}", label=f"{s} / {p}")
        a3.bar(xs, mb, width, color=f"C{i}", label=f"{s} / {p}")
    for a, yl in ((a1, "mean TTFT (ms)"), (a2, "cache hit ratio (unit lookups)"),
                  (a3, "SSD MB read per request")):
        a.set_xticks([b_i + 0.4 - width / 2 for b_i in range(len(budgets))])
        a.set_xticklabels([f"{b:g}" for b in budgets])
        a.set_xlabel("budget r")
        a.set_ylabel(yl)
    a1.legend(fontsize=7)
    cache = rows[0].get("cache_bytes", 0) / 1e6
    fig.suptitle(f"Cache policies, {workload}, warm, cache {cache:.0f} MB — {model_name(rows)}",
                 fontsize=10)
    save(fig, out, f"cache_policies_{workload}.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="the --out directory of ckv bench reprefill")
    ap.add_argument("--png-dir", default=None, help="where the PNGs go (default: DIR)")
    args = ap.parse_args()
    with open(os.path.join(args.dir, "summary.json")) as f:
        rows = json.load(f)
    out = args.png_dir or args.dir
    os.makedirs(out, exist_ok=True)
    groups = defaultdict(list)
    for r in rows:
        groups[(r.get("workload", "single"), r.get("mode", "cold"))].append(r)
    for (workload, mode), g in groups.items():
        if workload == "length-sweep":
            length_sweep(own_policy_rows(g), out, mode)
            continue
        own = own_policy_rows(g)
        if not own:
            print(f"{workload} {mode}: no system ran with its own cache policy; only the policy plot")
        tag = f"{workload}_{mode}"
        if own:
            title = f"{model_name(g)}, {workload}, prefix {own[0]['prefix_tokens']} tokens, {mode}"
            breakdown(own, out, tag, title)
            speedup(own, out, tag, title)
            bytes_read(own, out, tag, title)
        per_system = defaultdict(set)
        for r in g:
            per_system[r["system"]].add(r.get("cache_policy", "none"))
        if mode == "warm" and any(len(p) > 1 for p in per_system.values()):
            cache_policies(g, out, workload)


if __name__ == "__main__":
    main()

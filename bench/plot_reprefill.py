#!/usr/bin/python3
"""Plots for `ckv bench reprefill --out DIR`: TTFT breakdown per system and budget (stacked
bars: I/O wait, compute, other), speed-up of ContiguousKV over each baseline vs budget, and SSD
bytes read vs attended. Writes PNGs into DIR (or --png-dir).

    bench/plot_reprefill.py DIR [--mode cold|warm] [--png-dir OUT]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="the --out directory of ckv bench reprefill")
    ap.add_argument("--mode", default="cold", help="cold or warm rows")
    ap.add_argument("--png-dir", default=None, help="where the PNGs go (default: DIR)")
    args = ap.parse_args()
    with open(os.path.join(args.dir, "summary.json")) as f:
        rows = [r for r in json.load(f) if r.get("mode", "cold") == args.mode]
    if not rows:
        sys.exit(f"no {args.mode} rows in {args.dir}/summary.json")
    out = args.png_dir or args.dir
    os.makedirs(out, exist_ok=True)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    budgets = sorted({r["budget"] for r in rows})
    by = {(r["system"], r["budget"]): r for r in rows}
    title = f"{os.path.basename(rows[0]['model'].rstrip('/'))}, prefix {rows[0]['prefix_tokens']} tokens, {args.mode}"

    # 1. TTFT breakdown: one group of bars per budget, one bar per system.
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        xs = [b_i + i * width for b_i in range(len(budgets))]
        io = [by[(s, b)]["mean_io_wait_ms"] if (s, b) in by else 0 for b in budgets]
        comp = [by[(s, b)]["mean_compute_ms"] if (s, b) in by else 0 for b in budgets]
        other = [max(0.0, by[(s, b)]["mean_ttft_ms"] - io[j] - comp[j]) if (s, b) in by else 0
                 for j, b in enumerate(budgets)]
        ax.bar(xs, comp, width, label=f"{s}: compute", color=f"C{i}")
        ax.bar(xs, io, width, bottom=comp, label=f"{s}: I/O wait", color=f"C{i}", alpha=0.45, hatch="//")
        ax.bar(xs, other, width, bottom=[c + w for c, w in zip(comp, io)], color=f"C{i}", alpha=0.2)
    ax.set_xticks([b_i + 0.4 - width / 2 for b_i in range(len(budgets))])
    ax.set_xticklabels([f"{b:g}" for b in budgets])
    ax.set_xlabel("budget r")
    ax.set_ylabel("mean TTFT (ms)")
    ax.set_title(f"TTFT breakdown — {title}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"ttft_breakdown_{args.mode}.png"), dpi=110)

    # 2. Speed-up of contiguouskv over each other system.
    if "contiguouskv" in systems:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, s in enumerate(systems):
            if s == "contiguouskv":
                continue
            pts = [(b, by[(s, b)]["mean_ttft_ms"] / by[("contiguouskv", b)]["mean_ttft_ms"])
                   for b in budgets if (s, b) in by and ("contiguouskv", b) in by]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"vs {s}", color=f"C{i}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("budget r")
        ax.set_ylabel("TTFT ratio (baseline / ContiguousKV)")
        ax.set_title(f"Speed-up — {title}", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"speedup_{args.mode}.png"), dpi=110)

    # 3. Bytes read from SSD vs bytes attended.
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
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"bytes_{args.mode}.png"), dpi=110)
    print(f"wrote plots to {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Plots for `ckv bench serve --out DIR` (its summary.json), one figure per workload:

- serve_<workload>.png: per system, against concurrency: TTFT p50 (and p95, dashed), output
  tokens/s, and inter-token latency p50.

    bench/plot_serve.py DIR [--png-dir OUT]

Needs matplotlib (Debian: python3-matplotlib; run with /usr/bin/python3).
"""
import argparse
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--png-dir")
    args = ap.parse_args()
    with open(os.path.join(args.dir, "summary.json")) as f:
        rows = json.load(f)
    out = args.png_dir or args.dir
    by_workload = defaultdict(list)
    for r in rows:
        by_workload[r["workload"]].append(r)
    for workload, wrows in by_workload.items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        systems = sorted({r["system"] for r in wrows})
        for system in systems:
            srows = sorted((r for r in wrows if r["system"] == system),
                           key=lambda r: r["concurrency"])
            c = [r["concurrency"] for r in srows]
            line, = axes[0].plot(c, [r["ttft_p50_ms"] for r in srows], "o-", label=system)
            axes[0].plot(c, [r["ttft_p95_ms"] for r in srows], "--", color=line.get_color())
            axes[1].plot(c, [r["output_tokens_per_s"] for r in srows], "o-", label=system)
            axes[2].plot(c, [r["itl_p50_ms"] for r in srows], "o-", label=system)
        for ax, title in zip(axes, ["TTFT p50 (p95 dashed), ms", "output tokens/s",
                                    "inter-token latency p50, ms"]):
            ax.set_xlabel("concurrent users")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].set_yscale("log")
        axes[1].legend(fontsize=8)
        fig.suptitle(f"ckv bench serve: {workload}")
        fig.tight_layout()
        path = os.path.join(out, f"serve_{workload}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()

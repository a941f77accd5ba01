#!/usr/bin/python3
"""Iso-quality pairs across periods: quality from one model, TTFT from another run.

    bench/iso_quality_pairs.py --base BASE.json --ours P=QUALITY.json [--ours P=...] \
        --speed P=SUMMARY.json [--speed P=...] [--text NAME]

BASE.json and QUALITY.json are `ckv eval quality --json` outputs (pooled rows, prefix 0): the
baselines', and ContiguousKV's at period P (its budget grid). SUMMARY.json is a `ckv bench
reprefill` summary.json run at period P; the baselines' TTFT is taken from whichever summary
holds them. For each baseline at 5% and 10%, per period: the smallest ContiguousKV budget whose
mean KL is no higher and top-1 agreement no lower, and the TTFT ratio baseline / ContiguousKV
(regime and model are the summaries'; the quality is the quality files' model). Markdown out.
"""
import argparse
import json

BASELINES = ("as-h2o-lru", "impress", "impress-vote")


def pooled(path):
    return [r for r in json.load(open(path)) if r["prefix_tokens"] == 0]


def keyed(arg):
    period, _, path = arg.partition("=")
    return int(period), path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--ours", action="append", required=True, help="P=QUALITY.json")
    ap.add_argument("--speed", action="append", required=True, help="P=SUMMARY.json")
    ap.add_argument("--text", default="")
    ap.add_argument("--system", default="contiguouskv")
    a = ap.parse_args()
    base = pooled(a.base)
    ours = {p: [r for r in pooled(f) if r["system"] == a.system] for p, f in map(keyed, a.ours)}
    speed = {p: json.load(open(f)) for p, f in map(keyed, a.speed)}
    ttft = {}  # (system, budget, period or None) -> ms
    for p, rows in speed.items():
        for r in rows:
            mine = r["system"] == a.system
            ttft[(r["system"], round(r["budget"], 4), p if mine else None)] = r["mean_ttft_ms"]
    periods = sorted(ours)
    print("| text | baseline, budget (KL, top-1) | "
          + " | ".join(f"p = {p}: budget (KL), TTFT ratio" for p in periods) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in periods) + " |")
    for name in BASELINES:
        for budget in (0.05, 0.1):
            b = [r for r in base if r["system"] == name and abs(r["budget"] - budget) < 1e-9]
            bt = ttft.get((name, budget, None))
            if not b or bt is None:
                continue
            b = b[0]
            cells = []
            for p in periods:
                ok = sorted((r for r in ours[p] if r["mean_kl"] <= b["mean_kl"]
                             and r["top1_agreement"] >= b["top1_agreement"]),
                            key=lambda r: r["budget"])
                if not ok:
                    cells.append("none on the grid")
                    continue
                o = ok[0]
                t = ttft.get((a.system, round(o["budget"], 4), p))
                ratio = f"{bt / t:.2f}x ({bt:.0f} / {t:.0f} ms)" if t else "not timed"
                cells.append(f"{o['budget']:g} ({o['mean_kl']:.4f}), {ratio}")
            print(f"| {a.text} | {name} {budget:g} ({b['mean_kl']:.4f}, "
                  f"{100 * b['top1_agreement']:.0f}%) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

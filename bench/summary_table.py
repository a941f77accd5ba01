#!/usr/bin/python3
"""Markdown tables from a `ckv bench reprefill --out DIR` run (summary.json, requests.json):
one row per (workload, prefix length, mode, system, cache policy, budget), then the TTFT ratio
of every other system over ContiguousKV at each budget both measured.

    bench/summary_table.py DIR [--mode cold|warm] [--ours contiguouskv]
"""
import argparse
import collections
import json
import os

from reprefill_rows import has_own_policy


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--mode", default=None, help="only rows of this mode")
    ap.add_argument("--ours", default="contiguouskv")
    args = ap.parse_args()
    rows = json.load(open(os.path.join(args.dir, "summary.json")))
    if args.mode:
        rows = [r for r in rows if r.get("mode") == args.mode]
    def point(x):
        # Requests carry the stored prefix length they used, which only the length sweep's
        # summary rows are split by.
        prefix = x["prefix_tokens"] if x.get("workload") == "length-sweep" else None
        return (x.get("workload"), prefix, x["mode"], x["system"], x.get("cache_policy"), x["budget"])

    ident = collections.defaultdict(list)  # point -> identification ms of its requests
    for q in json.load(open(os.path.join(args.dir, "requests.json"))):
        ident[point(q)].append(q["scoring_ms"])

    print("| workload | prefix | mode | system | cache | budget | mean TTFT ms | P95 ms | I/O wait ms "
          "| compute ms | identification ms | SSD MB read | attended MB | read ampl. | cache hits |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ms = ident.get(point(r), [])
        sc = sum(ms) / len(ms) if ms else 0
        print(f"| {r['workload']} | {r['prefix_tokens']} | {r['mode']} | {r['system']} | {r['cache_policy']} "
              f"| {r['budget']:g} | {r['mean_ttft_ms']:.0f} | {r['p95_ttft_ms']:.0f} | {r['mean_io_wait_ms']:.0f} "
              f"| {r['mean_compute_ms']:.0f} | {sc:.0f} | {r['ssd_bytes_read'] / 1e6:.1f} "
              f"| {r['attended_bytes'] / 1e6:.1f} | {r['read_amplification']:.2f} | {r['cache_hit_ratio']:.2f} |")

    groups = collections.defaultdict(dict)
    for r in rows:
        if has_own_policy(r):
            groups[(r["workload"], r["prefix_tokens"], r["mode"])][(r["system"], r["budget"])] = r
    for (w, p, m), by in groups.items():
        systems = [s for s in dict.fromkeys(s for s, _ in by) if s != args.ours]
        budgets = sorted({b for s, b in by if s == args.ours and any((o, b) in by for o in systems)})
        if not budgets or not systems:
            continue
        print(f"\nTTFT ratio over {args.ours} — {w}, prefix {p}, {m}:\n")
        print("| budget | " + " | ".join(f"vs {s}" for s in systems) + " |")
        print("| --- |" + " --- |" * len(systems))
        for b in budgets:
            ours = by[(args.ours, b)]["mean_ttft_ms"]
            cells = [f"{by[(s, b)]['mean_ttft_ms'] / ours:.2f}x" if (s, b) in by else "" for s in systems]
            print(f"| {b:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Markdown tables for `ckv bench serve --out DIR` (its summary.json): one table per workload
(TTFT p50/p95/p99, ITL p50, output tokens/s, cached fraction, SSD bytes per request, mean
decode batch, the server's mean decode step, and the shares of the wall time its compute spent
decoding, prefilling and storing in the background, and the prefixes stored, and the answered
contexts skipped and still queued when the row ended), then the ratios the targets ask for: each system's output tokens/s at the highest
concurrency over its own at 1 (closed-loop runs only: with --think-ms tokens/s is the offered
load), and other systems' p50 TTFT over the first system's at every concurrency.

    bench/serve_table.py DIR
"""
import json
import os
import sys
from collections import defaultdict


def Step(r):
    # Summaries written before the compute counters existed have neither field.
    return f"{r['decode_step_ms_mean']:.1f}" if "decode_step_ms_mean" in r else "-"


def Shares(r):
    if "compute_share_decode" not in r:
        return "-"
    return "/".join(f"{100 * r['compute_share_' + k]:.0f}" for k in ("decode", "prefill", "store"))


def Stores(r):
    # Prefixes stored during the row (up to two per answer: its prompt and its whole context) /
    # answered contexts skipped for a full queue / contexts still queued or storing at its end.
    if "stores_done" not in r:
        return "-"
    return (f"{r['stores_done']:.0f}/{r['contexts_skipped']:.0f}/"
            f"{r['contexts_pending_at_end']:.0f}")


def main():
    with open(os.path.join(sys.argv[1], "summary.json")) as f:
        rows = json.load(f)
    by_workload = defaultdict(list)
    for r in rows:
        by_workload[r["workload"]].append(r)
    for workload, wrows in by_workload.items():
        print(f"#### {workload}\n")
        print("| system | users | TTFT p50 ms | p95 | p99 | ITL p50 ms | out tok/s | cached | "
              "SSD MB/req | batch | step ms | decode/prefill/store % | stored / ctx skipped / left | "
              "errors |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: |")
        for r in wrows:
            print(f"| {r['system']} | {r['concurrency']} | {r['ttft_p50_ms']:.0f} | "
                  f"{r['ttft_p95_ms']:.0f} | {r['ttft_p99_ms']:.0f} | {r['itl_p50_ms']:.1f} | "
                  f"{r['output_tokens_per_s']:.1f} | {r['cached_fraction']:.2f} | "
                  f"{r['ssd_bytes_per_request'] / 1e6:.2f} | {r['mean_decode_batch']:.2f} | "
                  f"{Step(r)} | {Shares(r)} | {Stores(r)} | {r['errors']} |")
        print()
        systems = []
        for r in wrows:
            if r["system"] not in systems:
                systems.append(r["system"])
        table = {(r["system"], r["concurrency"]): r for r in wrows}
        users = sorted({r["concurrency"] for r in wrows})
        think_ms = max(r.get("think_ms", 0) for r in wrows)
        if think_ms > 0:
            # Users who think between requests: tokens/s is the load they offered, not what
            # the server could do, so no capacity ratio is printed.
            print(f"- users think {think_ms:.0f} ms on average before each request: tokens/s "
                  "follow the offered load (no 8-over-1 capacity ratio)")
        for s in systems if think_ms == 0 else []:
            lo, hi = table.get((s, users[0])), table.get((s, users[-1]))
            if lo and hi and lo["output_tokens_per_s"] > 0:
                print(f"- {s}: output tokens/s at {users[-1]} users / at {users[0]}: "
                      f"{hi['output_tokens_per_s'] / lo['output_tokens_per_s']:.2f}x")
        ours = systems[0]
        for s in systems[1:]:
            ratios = []
            for u in users:
                a, b = table.get((ours, u)), table.get((s, u))
                if a and b and a["ttft_p50_ms"] > 0:
                    ratios.append(f"{u}: {b['ttft_p50_ms'] / a['ttft_p50_ms']:.2f}x")
            print(f"- p50 TTFT of {s} / {ours}, by users: " + ", ".join(ratios))
        print()


if __name__ == "__main__":
    main()

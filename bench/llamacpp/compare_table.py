#!/usr/bin/python3
"""The table of bench/llamacpp/compare.sh: one row per pair (ckv's run and llama.cpp's run
right after it), ratios within a pair, then medians over the pairs."""

import json
import statistics
import sys


def main():
    runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    pairs = {}
    for r in runs:
        pairs.setdefault(r["pair"], {})["ckv" if r["engine"] == "ckv" else "llama"] = r
    batches = sorted({b for r in runs for b in r.get("batch_decode_tokens_per_s", {})}, key=int)
    head = ["pair", "ckv prefill tok/s", "llama.cpp prefill tok/s", "ckv decode tok/s",
            "llama.cpp decode tok/s", "decode ckv/llama.cpp"]
    for b in batches:
        head += [f"ckv batch {b} tok/s", f"llama.cpp batch {b} tok/s", f"batch {b} ckv/llama.cpp"]
    print("| " + " | ".join(head) + " |")
    print("|" + " ---: |" * len(head))
    cols = {h: [] for h in head[1:]}
    for p in sorted(pairs):
        c, l = pairs[p].get("ckv"), pairs[p].get("llama")
        if not c or not l:
            continue
        vals = [c["prefill_tokens_per_s"], l["prefill_tokens_per_s"], c["decode_tokens_per_s"],
                l["decode_tokens_per_s"], c["decode_tokens_per_s"] / l["decode_tokens_per_s"]]
        for b in batches:
            cb = c["batch_decode_tokens_per_s"][b]
            lb = l["batch_decode_tokens_per_s"][b]
            vals += [cb, lb, cb / lb]
        for h, v in zip(head[1:], vals):
            cols[h].append(v)
        print(f"| {p} | " + " | ".join(f"{v:.2f}" if "ckv/" in h else f"{v:.1f}"
                                     for h, v in zip(head[1:], vals)) + " |")
    print("| median | " + " | ".join(
        (f"{statistics.median(v):.2f}" if "ckv/" in h else f"{statistics.median(v):.1f}") if v else "-"
        for h, v in cols.items()) + " |")


if __name__ == "__main__":
    main()

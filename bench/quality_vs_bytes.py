#!/usr/bin/python3
"""Quality against bytes read from the store: systems (and variants of one system) compared at
equal bytes, the issue's criterion for a selection rule beyond the paper's.

    bench/quality_vs_bytes.py LABEL=QUALITY.json [LABEL=QUALITY.json ...] [--png OUT.png]

Each QUALITY.json is `ckv eval quality --json` output with read_fraction (pooled rows,
prefix 0, are used). LABEL names the variant its ContiguousKV rows belong to (e.g. "p=2",
"p=1"); rows of other systems are labelled by their system name (give each baseline once).
Prints markdown:

1. every row by bytes read: label, budget, read fraction (of which identification-only),
   attended fraction, top-1, mean KL;
2. equal bytes: for every baseline row, the best (lowest KL) row of each ContiguousKV variant
   that read no more than it did.
"""
import argparse
import json

OURS = ("contiguouskv", "contiguouskv-coverage", "contiguouskv-whole-units")


def load(specs):
    rows = []
    for spec in specs:
        label, _, path = spec.rpartition("=")  # labels may hold "=", paths may not
        if not path:
            raise SystemExit(f"expected LABEL=FILE, got {spec!r}")
        with open(path) as f:
            for r in json.load(f):
                if r["prefix_tokens"] != 0:
                    continue
                if "read_fraction" not in r:
                    raise SystemExit(f"{path}: no read_fraction (ckv older than this script)")
                r = dict(r)
                r["label"] = f"{r['system']} {label}" if r["system"] in OURS else r["system"]
                rows.append(r)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--png", default=None)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    rows = load(args.inputs)
    # A baseline given in several files would be counted twice.
    seen = {}
    for r in rows:
        key = (r["label"], r["budget"])
        if key in seen:
            raise SystemExit(f"{r['label']} at {r['budget']:g} appears twice")
        seen[key] = r
    n = rows[0]["windows"] if rows else 0
    print(f"### Quality by bytes read ({n} windows per row, pooled over settings)\n")
    print("| system | budget | read (identification-only) | attended | top-1 | mean KL |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["label"], r["read_fraction"])):
        print(f"| {r['label']} | {r['budget']:g} | {r['read_fraction']:.3f} ({r['scoring_read_fraction']:.3f}) | "
              f"{r['attended_fraction']:.3f} | {100 * r['top1_agreement']:.1f}% | {r['mean_kl']:.4f} |")

    variants = sorted({r["label"] for r in rows if r["system"] in OURS})
    print("\n### Equal bytes: each variant's best row that read no more than the baseline\n")
    print("| baseline | budget | read | KL | " + " | ".join(f"{v}: budget, read, KL" for v in variants) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in variants) + " |")
    for b in sorted((r for r in rows if r["system"] not in OURS), key=lambda r: (r["label"], r["budget"])):
        cells = []
        for v in variants:
            cands = [o for o in rows if o["label"] == v and o["read_fraction"] <= b["read_fraction"] + 1e-9]
            if not cands:
                cells.append("none reads so little")
                continue
            o = min(cands, key=lambda o: o["mean_kl"])
            better = "**" if o["mean_kl"] <= b["mean_kl"] else ""
            cells.append(f"{o['budget']:g}, {o['read_fraction']:.3f}, {better}{o['mean_kl']:.4f}{better}")
        print(f"| {b['label']} | {b['budget']:g} | {b['read_fraction']:.3f} | {b['mean_kl']:.4f} | " + " | ".join(cells) + " |")
    print("\nBold: the variant is at least as good as the baseline while reading no more.")

    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label in sorted({r["label"] for r in rows}):
            pts = sorted((r["read_fraction"], r["mean_kl"]) for r in rows if r["label"] == label and r["budget"] < 1)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xlabel("bytes read from the store / prefix KV bytes")
        ax.set_ylabel("mean KL vs full attention (first token)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(args.title or "quality vs bytes read")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()

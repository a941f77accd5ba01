#!/usr/bin/python3
"""Quality side by side, at equal tokens attended, and iso-quality speed.

    bench/quality_pairs.py QUALITY.json [--bench SUMMARY.json] [--mode cold] [--png OUT.png]

QUALITY.json is `ckv eval quality --json` output (pooled rows, prefix 0, are used); run
ContiguousKV on a fine budget grid so the pairs below have something to choose from.
SUMMARY.json is the summary.json of a `ckv bench reprefill` run that has ContiguousKV at the
chosen budgets and IMPRESS at 5% and 10% (same run, same machine). Prints markdown tables:

1. every system at every budget (top-1 agreement, mean KL, NLL, fraction of prefix tokens
   attended);
2. equal tokens attended: each token-level baseline row next to the ContiguousKV budget whose
   attended fraction is closest to (and not below) the baseline's;
3. iso-quality: for IMPRESS (--baselines) at 5% and 10%, the smallest ContiguousKV budget whose mean KL is no
   higher and top-1 agreement no lower, and, with --bench, the TTFT ratio at that pair.
"""
import argparse
import json

from reprefill_rows import has_own_policy

OURS = "contiguouskv"


def pooled(rows):
    return [r for r in rows if r["prefix_tokens"] == 0]


def fmt_q(r):
    return f"{100 * r['top1_agreement']:.1f}% | {r['mean_kl']:.4f} | {r['mean_nll']:.4f} | {r['attended_fraction']:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("quality")
    ap.add_argument("--bench", default=None)
    ap.add_argument("--mode", default="cold")
    ap.add_argument("--ours", default=OURS, help="the ContiguousKV system name in both files")
    ap.add_argument("--png", default=None, help="plot quality vs tokens attended")
    ap.add_argument("--baselines", default="impress", help="systems to pair at iso-quality (comma list)")
    ap.add_argument("--title", default="bundled model", help="the model, for the plot's title")
    ap.add_argument("--by-prefix", action="store_true",
                    help="also a table of top-1 / KL per prefix length (mean over suffix lengths)")
    args = ap.parse_args()
    with open(args.quality) as f:
        all_rows = json.load(f)
    rows = pooled(all_rows)
    ours = sorted([r for r in rows if r["system"] == args.ours], key=lambda r: r["budget"])
    others = [r for r in rows if r["system"] != args.ours]
    n = rows[0]["windows"] if rows else 0

    print(f"### Quality at every budget ({n} windows per row, pooled over settings)\n")
    print("| system | budget | top-1 | mean KL | NLL | attended | adjacent-period overlap |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["system"] != args.ours, r["system"], r["budget"])):
        ov = r.get("adjacent_overlap")
        print(f"| {r['system']} | {r['budget']:g} | {fmt_q(r)} | {'' if ov is None else f'{100 * ov:.1f}%'} |")
    if rows:
        print(f"\nNLL under full attention: {rows[0]['full_mean_nll']:.4f}")

    if args.by_prefix:
        lengths = sorted({r["prefix_tokens"] for r in all_rows if r["prefix_tokens"]})
        print("\n### By prefix length (top-1 / mean KL, mean over suffix lengths)\n")
        print("| system | budget | " + " | ".join(f"prefix {p}" for p in lengths) + " |")
        print("| --- | --- |" + " --- |" * len(lengths))
        for r in sorted(rows, key=lambda r: (r["system"] != args.ours, r["system"], r["budget"])):
            cells = []
            for p in lengths:
                sub = [x for x in all_rows if x["system"] == r["system"] and x["budget"] == r["budget"]
                       and x["prefix_tokens"] == p]
                n = sum(x["windows"] for x in sub)
                top1 = sum(x["top1_agreement"] * x["windows"] for x in sub) / n
                kl = sum(x["mean_kl"] * x["windows"] for x in sub) / n
                cells.append(f"{100 * top1:.1f}% / {kl:.4f}")
            print(f"| {r['system']} | {r['budget']:g} | " + " | ".join(cells) + " |")

    print("\n### Equal tokens attended\n")
    print("| baseline | budget | attended | top-1 | mean KL | ContiguousKV budget | attended | top-1 | mean KL | better |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in sorted(others, key=lambda r: (r["system"], r["budget"])):
        if b["attended_fraction"] >= 0.999 or b["system"] == "random":
            continue
        cands = [o for o in ours if o["attended_fraction"] >= b["attended_fraction"] - 1e-9]
        if not cands:
            continue
        o = min(cands, key=lambda o: o["attended_fraction"])
        better = ("ContiguousKV" if o["mean_kl"] < b["mean_kl"] and o["top1_agreement"] >= b["top1_agreement"]
                  else b["system"] if b["mean_kl"] < o["mean_kl"] and b["top1_agreement"] >= o["top1_agreement"]
                  else "mixed")
        print(f"| {b['system']} | {b['budget']:g} | {b['attended_fraction']:.3f} | {100 * b['top1_agreement']:.1f}% | "
              f"{b['mean_kl']:.4f} | {o['budget']:g} | {o['attended_fraction']:.3f} | "
              f"{100 * o['top1_agreement']:.1f}% | {o['mean_kl']:.4f} | {better} |")

    bench = {}
    if args.bench:
        with open(args.bench) as f:
            for r in json.load(f):
                if r.get("mode", "cold") != args.mode:
                    continue
                if not has_own_policy(r):
                    continue
                key = (r["system"], round(r["budget"], 6))
                if key in bench:
                    raise SystemExit(f"--bench has several {args.mode} rows for {key} (workloads or prefix "
                                     "lengths): give it a summary.json of one workload")
                bench[key] = r
    print("\n### Iso-quality\n")
    print("| baseline | budget | top-1 | mean KL | smallest ContiguousKV budget at least as good | top-1 | mean KL |"
          + (" baseline TTFT ms | ContiguousKV TTFT ms | ratio |" if bench else ""))
    print("| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if bench else ""))
    pairs = [(s, b) for s in args.baselines.split(",") for b in (0.05, 0.1)]
    for base, ib in pairs:
        imp = [r for r in others if r["system"] == base and abs(r["budget"] - ib) < 1e-9]
        if not imp:
            continue
        imp = imp[0]
        match = [o for o in ours if o["mean_kl"] <= imp["mean_kl"] and o["top1_agreement"] >= imp["top1_agreement"]]
        line = f"| {base} | {ib:g} | {100 * imp['top1_agreement']:.1f}% | {imp['mean_kl']:.4f} | "
        if not match:
            print(line + "none on the grid | | |" + (" | | |" if bench else ""))
            continue
        o = match[0]
        line += f"{o['budget']:g} | {100 * o['top1_agreement']:.1f}% | {o['mean_kl']:.4f} |"
        if bench:
            bi = bench.get((base, round(ib, 6)))
            bo = bench.get((args.ours, round(o["budget"], 6)))
            if bi and bo:
                line += f" {bi['mean_ttft_ms']:.0f} | {bo['mean_ttft_ms']:.0f} | **{bi['mean_ttft_ms'] / bo['mean_ttft_ms']:.2f}x** |"
            else:
                line += " not in --bench | | |"
        print(line)

    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        systems = list(dict.fromkeys(r["system"] for r in rows))
        for i, s in enumerate(systems):
            pts = sorted((r["attended_fraction"], r["mean_kl"], r["top1_agreement"]) for r in rows
                         if r["system"] == s and r["attended_fraction"] < 0.999)
            if not pts:
                continue
            a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=s)
            a2.plot([p[0] for p in pts], [100 * p[2] for p in pts], marker="o", color=f"C{i}", label=s)
        a1.set_yscale("log")
        a1.set_ylabel("mean KL vs full attention (nats)")
        a2.set_ylabel("top-1 agreement with full attention (%)")
        for a in (a1, a2):
            a.set_xlabel("fraction of prefix tokens attended")
            a.legend(fontsize=8)
        fig.suptitle(f"Quality vs tokens attended ({args.title})", fontsize=10)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"\n{args.png}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The trained model's iso-quality pairs re-derived on the Qwen2.5-0.5B shape (random weights,
# 32K-token prefix, cold): ContiguousKV at p = 1 and p = 2 at the budgets the pairs need, the
# baselines at 5% and 10%, on this disk and on an emulated 50 MB/s device; then the pair tables
# from the quality files of bench/trained_model.sh (or $QUALITY_DIR: quality_NAME_baselines.json,
# quality_NAME_ours_p1.json, quality_NAME_ours.json at p = 2). Runs alone: 2 cores; ~25 min
# the first time (two 32K-token prefills), ~10 min with the store in place.
set -euo pipefail
cd "$(dirname "$0")/.."
CKV=${CKV:-build/ckv}
Q05=${Q05:-/tmp/q05}
STORE=${STORE:-/tmp/st32iso}
OUT=${OUT:-out/iso05}
QUALITY_DIR=${QUALITY_DIR:-out/trained}
[ -d "$Q05" ] || "$CKV" model synth --config qwen2.5-0.5b --out "$Q05"
common=(--model "$Q05" --store "$STORE" --prefix-tokens 32704 --suffix-tokens 32 --requests 3
  --warmup 1 --mode cold --no-plots)
for cap in 0 50; do
  "$CKV" bench reprefill "${common[@]}" --period 1 --io-bandwidth-cap $cap \
    --systems contiguouskv --budgets 0.15,0.2,0.3,0.4,0.5 --out "$OUT/p1_cap$cap"
  "$CKV" bench reprefill "${common[@]}" --period 2 --io-bandwidth-cap $cap \
    --systems contiguouskv,as-lru,as-h2o-lru,impress,impress-vote --budgets 0.05,0.1 \
    --budgets-for contiguouskv:0.5,0.75 --budgets-for as-lru:1 --out "$OUT/p2_cap$cap"
done
for name in kjv_john email_header_value_parser; do
  for cap in 0 50; do
    echo "## $name, io-bandwidth-cap $cap"
    /usr/bin/python3 bench/iso_quality_pairs.py --text "$name" \
      --base "$QUALITY_DIR/quality_${name}_baselines.json" \
      --ours "1=$QUALITY_DIR/quality_${name}_ours_p1.json" \
      --ours "2=$QUALITY_DIR/quality_${name}_ours.json" \
      --speed "1=$OUT/p1_cap$cap/summary.json" --speed "2=$OUT/p2_cap$cap/summary.json"
  done
done | tee "$OUT/pairs.md"

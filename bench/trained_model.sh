#!/usr/bin/env bash
# Every measurement of docs/BENCHMARKS.md's "trained model" section, on models/ckv-long-8m
# (or $MODEL) and its held-out texts, into $OUT (default out/trained). Runs alone: 2 cores.
#
#   bench/trained_model.sh [quick]
#
# "quick" cuts windows and requests to a smoke run (~2 min).
set -euo pipefail
cd "$(dirname "$0")/.."
CKV=${CKV:-build/ckv}
MODEL=${MODEL:-models/ckv-long-8m}
OUT=${OUT:-out/trained}
PERIOD=${PERIOD:-2}  # 8 layers: 4 periods (the 0.5B shape's 24 layers at p = 8 make 3)
WINDOWS=6
REQUESTS=8
if [ "${1:-}" = quick ]; then WINDOWS=2; REQUESTS=1; fi
mkdir -p "$OUT"
texts=(data/heldout/kjv_john.txt data/heldout/email_header_value_parser.py)

echo "== perplexity by position (context 4096 and 8192)"
for t in "${texts[@]}"; do
  name=$(basename "$t" | cut -d. -f1)
  for ctx in 4096 8192; do
    "$CKV" eval perplexity --model "$MODEL" --text "$t" --context $ctx --json \
      >"$OUT/perplexity_${name}_${ctx}.json"
  done
done

echo "== induction probe"
"$CKV" eval induction --model "$MODEL" --text data/heldout/kjv_john.txt --span 32 \
  --gaps 256,1024,3072,7000 --trials 8 --json >"$OUT/induction.json"

echo "== quality: every system at 5/10/25/50%, ContiguousKV on a fine grid"
for t in "${texts[@]}"; do
  name=$(basename "$t" | cut -d. -f1)
  "$CKV" eval quality --model "$MODEL" --text "$t" --prefix-tokens 1024,2048,4096,8000 \
    --suffix-tokens 8,32 --period "$PERIOD" --budgets 0.05,0.1,0.25,0.5 \
    --systems contiguouskv-summaries,random,as-lru,as-h2o-lru,impress,impress-vote \
    --windows $WINDOWS --json >"$OUT/quality_${name}_baselines.json"
  "$CKV" eval quality --model "$MODEL" --text "$t" --prefix-tokens 1024,2048,4096,8000 \
    --suffix-tokens 8,32 --period "$PERIOD" \
    --budgets 0.025,0.05,0.075,0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.75 --systems contiguouskv \
    --windows $WINDOWS --json >"$OUT/quality_${name}_ours.json"
  /usr/bin/python3 -c 'import json, sys; json.dump(json.load(open(sys.argv[1])) + json.load(open(sys.argv[2])), open(sys.argv[3], "w"))' \
    "$OUT/quality_${name}_baselines.json" "$OUT/quality_${name}_ours.json" "$OUT/quality_${name}.json"
done

echo "== quality at equal bytes read: per layer (p = 1) beside per period, top fraction and coverage"
for t in "${texts[@]}"; do
  name=$(basename "$t" | cut -d. -f1)
  "$CKV" eval quality --model "$MODEL" --text "$t" --prefix-tokens 1024,2048,4096,8000 \
    --suffix-tokens 8,32 --period 1 --budgets 0.05,0.1,0.15,0.2,0.25,0.3,0.4,0.5 \
    --systems contiguouskv --windows $WINDOWS --json >"$OUT/quality_${name}_ours_p1.json"
  # Beyond the paper: each period takes what its attention needs (budget = mass left out).
  for p in 1 "$PERIOD"; do
    "$CKV" eval quality --model "$MODEL" --text "$t" --prefix-tokens 1024,2048,4096,8000 \
      --suffix-tokens 8,32 --period $p --budgets 0.01,0.02,0.05,0.1,0.2,0.3 \
      --systems contiguouskv-coverage --windows $WINDOWS --json \
      >"$OUT/quality_${name}_coverage_p$p.json"
  done
  /usr/bin/python3 bench/quality_vs_bytes.py "p=$PERIOD=$OUT/quality_${name}_ours.json" \
    "p=1=$OUT/quality_${name}_ours_p1.json" "base=$OUT/quality_${name}_baselines.json" \
    "p=1=$OUT/quality_${name}_coverage_p1.json" "p=$PERIOD=$OUT/quality_${name}_coverage_p$PERIOD.json" \
    --png "$OUT/quality_vs_bytes_${name}.png" --title "ckv-long-8m, held-out $name" \
    >"$OUT/bytes_${name}.md"
done

echo "== speed on this model: 8K prefix, cold"
rm -rf "$OUT/store"
"$CKV" bench reprefill --model "$MODEL" --store "$OUT/store" --text data/heldout/kjv_john.txt \
  --prefix-tokens 8000 --suffix-tokens 32 --period "$PERIOD" \
  --systems contiguouskv,contiguouskv-summaries,as-lru,as-h2o-lru,impress,impress-vote \
  --budgets 0.05,0.1,0.25,0.5 --budgets-for contiguouskv:0.025,0.05,0.075,0.1,0.15,0.2,0.25,0.3,0.5 \
  --requests $REQUESTS --warmup 1 --mode cold --no-plots --out "$OUT/speed8k"
rm -rf "$OUT/store"

for t in "${texts[@]}"; do
  name=$(basename "$t" | cut -d. -f1)
  /usr/bin/python3 bench/quality_pairs.py "$OUT/quality_${name}.json" \
    --bench "$OUT/speed8k/summary.json" --baselines impress,impress-vote,as-h2o-lru \
    --png "$OUT/quality_vs_attended_${name}.png" --title "ckv-long-8m, held-out $name" \
    --by-prefix >"$OUT/pairs_${name}.md"
done
echo "== done: $OUT"

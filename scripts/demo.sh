#!/usr/bin/env bash
# The demo on the bundled model: store a long story as a prefix, then answer continuation
# requests through the Re-Prefill pipeline, comparing each answer with full attention.
set -euo pipefail
CKV=${1:-build/ckv}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="$ROOT/models/stories260k"
STORE="$(mktemp -d /tmp/ckv-demo-XXXXXX)"
trap 'rm -rf "$STORE"' EXIT

echo "== 1. plain generation"
"$CKV" generate --model "$MODEL" --prompt "Once upon a time" --max-tokens 48
echo

# A story of ~400 tokens (the bundled model's context is 512 tokens).
STORY="$(cat "$ROOT/data/demo_story.txt")"
echo "== 2. store the story as a prefix (prefill once, persist its KV in ContiguousChunk layout)"
"$CKV" cache put --model "$MODEL" --store "$STORE" --text "$STORY" --quiet
"$CKV" cache ls --store "$STORE"
echo

echo "== 3. continuation requests through Re-Prefill (prefix found by content, chunks selected per period)"
echo "   (this tiny model's read units are 5 layers x 2 KiB = 10 KiB, padded to 12 KiB for O_DIRECT:"
echo "    read amplification 1.2 here; 1.00 at real model sizes, e.g. 8 x 8 KiB for Qwen2.5-0.5B)"
for question in " The next day," " Then she said," " At the end of the day,"; do
  for budget in 0.25 1.0; do
    echo "-- request: <story>$question   (budget $budget)"
    "$CKV" reprefill --model "$MODEL" --store "$STORE" --prompt "$STORY$question" \
      --budget "$budget" --max-tokens 24 --compare-full
  done
done

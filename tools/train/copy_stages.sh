#!/usr/bin/env bash
# The copy stages that teach a trained model to copy (induction heads), as one chain from an
# exported model (FROM: the 11.0M-token model the shipped weights came from, e.g. its files
# from `git show 558ec74:models/ckv-long-8m/FILE`) to build-train/copy-chain/model-*:
#   1. copy 2.46M tokens (256-token periodic windows), then copy-mix 2.46M at 512-token windows;
#   2. copy-mix 2.0M at 2,048-token windows;
#   3. copy-mix 2.0M at 4,096-token windows with 8 far pairs per text window.
# Each stage starts from the previous one's export (--init-from: a fresh optimizer, as the
# measured runs did) and is checked against `ckv logits`. ~2.5 h on the 2-core machine;
# a rerun resumes each stage from its checkpoint. tools/train/README.md has the measurements.
set -euo pipefail
cd "$(dirname "$0")/../.."
FROM=${FROM:?set FROM to the 11.0M-token model directory (see above)}
OUT=${OUT:-build-train/copy-chain}
CKV=${CKV:-build/ckv}
PY=/usr/bin/python3
scripts/install-train-deps.sh
$PY tools/train/corpus.py --out build-train/corpus >/dev/null
mkdir -p "$OUT"

stage() {  # name, init-from dir, train.py arguments...
  local name=$1 from=$2
  shift 2
  if [ ! -f "$OUT/model-$name/model.safetensors" ]; then
    $PY tools/train/train.py --corpus build-train/corpus --tokenizer "$FROM" \
      --out "$OUT/run-$name" --init-from "$from" --tokens 0 --repeat-tokens 0 "$@"
    $PY tools/train/export.py --run "$OUT/run-$name" --tokenizer "$FROM" \
      --out "$OUT/model-$name" --check "$CKV"
  fi
}

stage 1 "$FROM" --copy-tokens 2.46e6 --copy-mix-tokens 2.46e6
stage 2 "$OUT/model-1" --copy-tokens 0 --copy-mix-tokens 2.0e6 --copy-mix-length 2048
stage 3 "$OUT/model-2" --copy-tokens 0 --copy-mix-tokens 2.0e6 --copy-mix-length 4096 \
  --copy-mix-far-pairs 8
echo "== done: $OUT/model-3"

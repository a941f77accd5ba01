#!/usr/bin/env bash
# The demo on the bundled model: greedy generation from a few prompts.
set -euo pipefail
CKV=${1:-build/ckv}
MODEL="$(cd "$(dirname "$0")/.." && pwd)/models/stories260k"
for prompt in "Once upon a time" "Lily and Tom went to the park" "The little dog"; do
  echo "== prompt: $prompt"
  "$CKV" generate --model "$MODEL" --prompt "$prompt" --max-tokens 64
done

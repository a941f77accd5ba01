#!/bin/sh
# ckv and llama.cpp decoding the same model on this machine, alternating, so both see the
# same minutes (this VM's memory bandwidth moves by tens of percent within an hour).
#
#   bench/llamacpp/compare.sh [--model DIR] [--pairs N] [--prompt-tokens N]
#                             [--decode-tokens N] [--batch LIST] [--out DIR]
#
# llama.cpp comes from the npm package node-llama-cpp, pinned in package.json beside this
# script and installed on first use into $CKV_LLAMACPP_DIR (default ~/.cache/ckv-llamacpp;
# ~0.7 GB: it ships prebuilt builds for every x86 level). The Hugging Face model is written
# as GGUF by to_gguf.py (bf16 matrices stay bf16) and checked first: llama.cpp's most
# probable next token must equal ckv's on two prompts, or nothing is measured.
# Results: OUT/results.jsonl (one JSON object per run) and a table on stdout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=/tmp/q05 pairs=4 prompt=64 decode=48 batch=8 out=/tmp/ckv-llamacpp-compare
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --prompt-tokens) prompt=$2; shift 2 ;;
    --decode-tokens) decode=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ckv=${CKV:-$root/build/ckv}
[ -x "$ckv" ] || { echo "compare.sh: $ckv not built (make build)" >&2; exit 1; }
[ -f "$model/config.json" ] || { echo "compare.sh: $model/config.json missing" >&2; exit 1; }
threads=$(nproc)

dir=${CKV_LLAMACPP_DIR:-$HOME/.cache/ckv-llamacpp}
mkdir -p "$dir" "$out"
if ! cmp -s "$here/package.json" "$dir/package.json" || [ ! -d "$dir/node_modules/node-llama-cpp" ]; then
  cp "$here/package.json" "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
fi
cp "$here/bench.mjs" "$dir/bench.mjs"

gguf=$out/$(basename "$model").gguf
if [ ! -f "$gguf" ] || [ "$model/model.safetensors" -nt "$gguf" ]; then
  /usr/bin/python3 "$here/to_gguf.py" "$model" "$gguf"
fi

for ids in 9707,11,1879,0,358,1079,264,2613 785,3974,13939,38835,34208,916,279,15678,5562,13; do
  theirs=$(node "$dir/bench.mjs" --model "$gguf" --threads "$threads" --next-token-of "$ids" |
           /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["top"][0])')
  ours=$("$ckv" logits --model "$model" --ids "$ids" --json |
         /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["argmax"])')
  if [ "$theirs" != "$ours" ]; then
    echo "compare.sh: after $ids llama.cpp predicts $theirs, ckv $ours: the GGUF is not the same model" >&2
    exit 1
  fi
done
echo "conversion checked: same next token on both prompts" >&2

results=$out/results.jsonl
: > "$results"
i=1
while [ "$i" -le "$pairs" ]; do
  "$ckv" bench model --model "$model" --prompt-tokens "$prompt" --decode-tokens "$decode" \
      --repeat 3 --batch "$batch" --json |
    /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); j["engine"]="ckv"; j["pair"]='"$i"'; print(json.dumps(j))' >> "$results"
  node "$dir/bench.mjs" --model "$gguf" --threads "$threads" --prompt-tokens "$prompt" \
      --decode-tokens "$decode" --repeat 3 --batch "$batch" |
    /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); j["pair"]='"$i"'; print(json.dumps(j))' >> "$results"
  i=$((i + 1))
done
/usr/bin/python3 "$here/compare_table.py" "$results"

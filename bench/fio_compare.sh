#!/usr/bin/env bash
# Side-by-side O_DIRECT read bandwidth: `ckv bench io` against fio (ioengine=io_uring,
# direct=1, numjobs=1, time_based) on the same test file, for every
# pattern x block size x queue depth. Each point runs both tools back to back (alternating which
# goes first) so background load drifts affect both alike.
#
#   bench/fio_compare.sh [--dir DIR] [--file-mib 1024] [--seconds 1]
#                        [--block-kib 4,16,32,64,256] [--depth 1,2,4,8,16,32,64]
#                        [--pattern seq,rand] [--backend auto|uring|threads]
#                        [--repeat 1] [--ckv PATH] [--ckv-args "ARGS"] [--markdown]
#                        [--raw FILE]
#
# The full default grid is 70 points x 2 tools x --seconds (plus ~0.2 s start-up each), times
# --repeat; with --repeat N > 1 the table shows each tool's median of the N runs of a point
# (useful on shared or virtualized disks whose speed drifts).
# ckv's buffers are transparent huge pages by default, fio's are malloc'ed 4 KiB pages; pass
# --ckv-args --no-huge-pages for the same buffer memory (see docs/BENCH_IO.md).
set -euo pipefail

DIR="${TMPDIR:-/tmp}"
FILE_MIB=1024
SECONDS_PER_POINT=1
BLOCKS="4,16,32,64,256"
DEPTHS="1,2,4,8,16,32,64"
PATTERNS="seq,rand"
BACKEND="auto"
CKV=""
MARKDOWN=0
RAW=""
REPEAT=1
CKV_ARGS=""

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --file-mib) FILE_MIB="$2"; shift 2 ;;
    --seconds) SECONDS_PER_POINT="$2"; shift 2 ;;
    --block-kib) BLOCKS="$2"; shift 2 ;;
    --depth) DEPTHS="$2"; shift 2 ;;
    --pattern) PATTERNS="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    --ckv) CKV="$2"; shift 2 ;;
    --markdown) MARKDOWN=1; shift ;;
    --raw) RAW="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --ckv-args) CKV_ARGS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "$CKV" ]]; then
  for c in "$ROOT/build/ckv" "$ROOT/build-io/ckv"; do
    [[ -x "$c" ]] && { CKV="$c"; break; }
  done
fi
[[ -n "$CKV" && -x "$CKV" ]] || { echo "ckv binary not found (build it, or pass --ckv PATH)" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio not found (Debian: apt-get install fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

FILE="$DIR/ckv-bench-io.dat"
RUNTIME_MS=$(python3 -c "print(max(1, round(float('$SECONDS_PER_POINT') * 1000)))")
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROWS="$WORK/rows.jsonl"
: >"$ROWS"

# Creates (or validates and reuses) the test file, and checks O_DIRECT on it.
"$CKV" bench io --dir "$DIR" --file-mib "$FILE_MIB" --block-kib 4 --depth 1 --pattern seq \
  --seconds 0.05 --backend "$BACKEND" --json >"$WORK/probe.json"
if ! python3 -c "import json,sys; sys.exit(0 if json.loads(open('$WORK/probe.json').readline())['direct'] else 1)"; then
  echo "!!! $DIR refuses O_DIRECT: ckv falls back to buffered reads and fio --direct=1 will fail." >&2
  echo "!!! Use a directory on a disk-backed filesystem (--dir)." >&2
  exit 1
fi

run_ckv() {  # pattern block depth
  "$CKV" bench io --dir "$DIR" --file-mib "$FILE_MIB" --pattern "$1" --block-kib "$2" \
    --depth "$3" --seconds "$SECONDS_PER_POINT" --backend "$BACKEND" $CKV_ARGS --json >>"$ROWS"
}

run_fio() {  # pattern block depth
  local rw=read
  [[ "$1" == rand ]] && rw=randread
  fio --name=ckvcmp --filename="$FILE" --size="${FILE_MIB}M" --rw="$rw" --bs="${2}k" \
    --iodepth="$3" --ioengine=io_uring --direct=1 --numjobs=1 --time_based=1 \
    --runtime="${RUNTIME_MS}ms" --output-format=json >"$WORK/fio.json"
  python3 - "$WORK/fio.json" "$1" "$2" "$3" >>"$ROWS" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("{"):])  # fio may print notes before the JSON
job = doc["jobs"][0]
if job.get("error", 0):
    sys.exit(f"fio failed: error {job['error']}")
r = job["read"]
print(json.dumps({"tool": "fio", "pattern": sys.argv[2], "block_kib": int(sys.argv[3]),
                  "depth": int(sys.argv[4]), "mib_s": r["bw_bytes"] / 2**20, "iops": r["iops"]}))
EOF
}

IFS=, read -r -a P_LIST <<<"$PATTERNS"
IFS=, read -r -a B_LIST <<<"$BLOCKS"
IFS=, read -r -a D_LIST <<<"$DEPTHS"
total=$(( ${#P_LIST[@]} * ${#B_LIST[@]} * ${#D_LIST[@]} ))
i=0
for p in "${P_LIST[@]}"; do
  for b in "${B_LIST[@]}"; do
    for d in "${D_LIST[@]}"; do
      i=$((i + 1))
      for ((r = 0; r < REPEAT; r++)); do
        printf '\r[%d/%d] %s %sk depth %s   ' "$i" "$total" "$p" "$b" "$d" >&2
        if (( (i + r) % 2 )); then run_ckv "$p" "$b" "$d"; run_fio "$p" "$b" "$d";
        else run_fio "$p" "$b" "$d"; run_ckv "$p" "$b" "$d"; fi
      done
    done
  done
done
echo >&2
[[ -n "$RAW" ]] && cp "$ROWS" "$RAW"

python3 - "$ROWS" "$MARKDOWN" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
markdown = sys.argv[2] == "1"
def medians(tool):
    runs = {}
    for r in rows:
        if r["tool"] == tool:
            runs.setdefault((r["pattern"], r["block_kib"], r["depth"]), []).append(r)
    return {k: {"mib_s": statistics.median(x["mib_s"] for x in v),
                "iops": statistics.median(x["iops"] for x in v), "n": len(v)}
            for k, v in runs.items()}
ckv, fio = medians("ckv"), medians("fio")
keys = [k for k in ckv if k in fio]
first = next((r for r in rows if r["tool"] == "ckv"), {})
backend = first.get("backend", "?")
reg = first.get("registered_buffers", False)
huge = first.get("huge_pages", False)
runs = max((v["n"] for v in ckv.values()), default=0)
head = ["pattern", "block KiB", "depth", "ckv MiB/s", "fio MiB/s", "ckv/fio", "ckv IOPS", "fio IOPS"]
lines = []
ratios = []
for k in keys:
    c, f = ckv[k], fio[k]
    ratio = c["mib_s"] / f["mib_s"] if f["mib_s"] > 0 else float("nan")
    ratios.append((ratio, k))
    flag = " *" if ratio < 0.85 else ""
    lines.append([k[0], str(k[1]), str(k[2]), f"{c['mib_s']:.1f}", f"{f['mib_s']:.1f}",
                  f"{ratio:.2f}{flag}", f"{c['iops']:.0f}", f"{f['iops']:.0f}"])
print(f"ckv backend: {backend}{' (registered buffers)' if reg else ''}, "
      f"{'huge-page' if huge else '4 KiB-page'} buffers; fio: ioengine=io_uring "
      f"direct=1" + (f"; median of {runs} runs per point" if runs > 1 else ""))
if markdown:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(" --- " for _ in head) + "|")
    for l in lines:
        print("| " + " | ".join(l) + " |")
else:
    w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w[i]) for i, h in enumerate(head)))
    for l in lines:
        print("  ".join(x.rjust(w[i]) for i, x in enumerate(l)))
if ratios:
    rs = [r for r, _ in ratios]
    below = [k for r, k in ratios if r < 0.85]
    print(f"\nckv/fio bandwidth ratio: min {min(rs):.2f}, median {statistics.median(rs):.2f}, "
          f"max {max(rs):.2f}; {len(below)} of {len(rs)} points below 0.85 (marked *)")
EOF

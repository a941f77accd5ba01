#!/usr/bin/python3
"""Writes the model card (README.md) of an exported model directory from what the run recorded:
architecture from config.json, tokens and time from the training log, held-out loss, the
position-bucket NLL from `ckv eval perplexity --json` outputs, and the sha256 of every file.

    model_card.py MODEL_DIR --perplexity NAME=A.json [NAME=B.json ...] [--induction I.json]
"""

import argparse
import csv
import hashlib
import json
import os


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bucket_name(b):
    k = lambda n: f"{n // 1024}K"
    begin = k(b["begin"]) if b["begin"] % 1024 == 0 and b["begin"] > 0 else str(b["begin"])
    end = k(b["end"]) if b["end"] % 1024 == 0 else str(b["end"] - 1)
    return f"{begin}-{end}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--perplexity", nargs="*", default=[], metavar="NAME=FILE")
    ap.add_argument("--induction", default=None)
    ap.add_argument("--note", default="", help="a sentence for the training section")
    ap.add_argument("--findings", default=None, help="a markdown file: what the numbers show")
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    rows = list(csv.DictReader(open(os.path.join(args.model, "training_log.csv"))))
    last = rows[-1]
    held = [r for r in rows if r["heldout_loss_1k"]]
    params = (cfg["vocab_size"] * cfg["hidden_size"] + cfg["num_hidden_layers"] * (
        cfg["hidden_size"] * cfg["head_dim"] * (2 * cfg["num_attention_heads"] + 2 * cfg["num_key_value_heads"])
        + 3 * cfg["hidden_size"] * cfg["intermediate_size"] + 2 * cfg["hidden_size"]) + cfg["hidden_size"])
    phases = []
    for r in rows:
        if not phases or phases[-1][0] != int(r["length"]):
            phases.append([int(r["length"]), 0])
        phases[-1][1] = int(r["tokens"])
    prev = 0
    phase_text = []
    for length, until in phases:
        phase_text.append(f"{length} ({(until - prev) / 1e6:.2f}M)")
        prev = until

    out = []
    w = out.append
    w("# ckv-long-8m: a small long-context Llama trained for ContiguousKV's quality tables\n")
    w("Trained from scratch on this project's 2-core development machine by `make train-model`")
    w("(`tools/train/`, see its README). It exists so quality can be measured at 1K-8K-token")
    w("prefixes on a model whose attention was learned, not random. It is a small model: it")
    w("continues Python and King-James English plausibly, it is not an assistant.\n")
    w("## Architecture\n")
    w(f"`LlamaForCausalLM`: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
      f"{cfg['num_attention_heads']} query heads and {cfg['num_key_value_heads']} KV heads of "
      f"{cfg['head_dim']} (GQA), SwiGLU {cfg['intermediate_size']}, RMSNorm, rotate-half RoPE "
      f"(theta {cfg['rope_theta']:g}), tied embeddings, vocabulary {cfg['vocab_size']}, context "
      f"{cfg['max_position_embeddings']}. {params / 1e6:.2f}M parameters, float32 safetensors.\n")
    w("## Data and licenses\n")
    w("- Python 3.11 standard library sources from Debian 12's `libpython3.11-stdlib` "
      "(`/usr/lib/python3.11`, no site-/dist-packages): PSF License Version 2.")
    w("- The King James Bible, one document per book, from Debian's `bible-kjv`: public domain.")
    w("- `data/pride_and_prejudice.txt` (public domain) and `data/tinystories.txt` (CDLA-Sharing-1.0).")
    w("- Held out (never trained on): ~3% of documents by a hash of their name, and the books of "
      "John and Romans; `data/heldout/` ships two of them (John, `email/_header_value_parser.py`).\n")
    w("Tokenizer: SentencePiece BPE trained on the training split (8,192 pieces, byte fallback, "
      "whitespace kept), converted to `tokenizer.json`; `tokenizer.model` is the SentencePiece "
      "original the trainer encoded with (identical ids on all held-out documents).\n")
    w("## Training\n")
    w(f"{int(last['tokens']) / 1e6:.2f}M tokens in {int(last['step'])} steps of 8,192 tokens, "
      f"{float(last['seconds']) / 3600:.2f} h of step time on 2 CPU cores (bf16 autocast). "
      f"Window length by phase (tokens): {', '.join(phase_text)}. AdamW, peak LR 2e-3, cosine "
      "to 10%. Loss curve: `loss_curve.png`; every step: `training_log.csv`." +
      (f" {args.note}" if args.note else "") + "\n")
    w("![loss curve](loss_curve.png)\n")
    if held:
        w(f"Held-out loss on 16 fixed 1K windows: {float(held[0]['heldout_loss_1k']):.3f} at "
          f"{int(held[0]['tokens']) / 1e6:.2f}M tokens, {float(held[-1]['heldout_loss_1k']):.3f} "
          f"at the end (nats/token).\n")
    for spec in args.perplexity:
        name, path = spec.split("=", 1)
        p = json.load(open(path))
        w(f"### Held-out NLL by position: {name}\n")
        w(f"`ckv eval perplexity --context {p['context']}`: {p['windows']} windows, mean NLL "
          f"{p['mean_nll']:.3f}.\n")
        w("| positions | tokens | mean NLL |")
        w("| --- | --- | --- |")
        for b in p["buckets"]:
            w(f"| {bucket_name(b)} | {b['tokens']} | {b['mean_nll']:.3f} |")
        w("")
    if args.induction:
        w("### Induction probe\n")
        ind = json.load(open(args.induction))
        n = ind[0]["span_tokens"]
        w(f"`ckv eval induction`: {n} random tokens, real text, the same {n} tokens again; NLL of "
          f"tokens 2-{n} of each occurrence ({ind[0]['trials']} trials per gap).\n")
        w("| gap (tokens) | NLL first | NLL repeated | repeated top-1 |")
        w("| --- | --- | --- | --- |")
        for r in ind:
            w(f"| {r['gap']} | {r['first_nll']:.2f} | {r['second_nll']:.2f} | "
              f"{100 * r['second_top1']:.0f}% |")
        w("")
    if args.findings:
        w(open(args.findings).read().strip() + "\n")
    w("## Files\n")
    w("| file | bytes | sha256 |")
    w("| --- | --- | --- |")
    for f in sorted(os.listdir(args.model)):
        if f == "README.md":
            continue
        path = os.path.join(args.model, f)
        w(f"| `{f}` | {os.path.getsize(path)} | `{sha256(path)}` |")
    w("")
    with open(os.path.join(args.model, "README.md"), "w") as fh:
        fh.write("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Exports a training checkpoint as a Hugging Face model directory that `ckv` loads unchanged
(config.json, model.safetensors in float32, tokenizer files), plus the loss curve.

--check runs `ckv logits` on a held-out prompt and compares with this PyTorch model's logits:
the export is only good if the engine computes what was trained.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from llama import Config, Llama  # noqa: E402


def load_model(ckpt_path):
    ck = torch.load(ckpt_path)
    model = Llama(Config(**ck["config"]))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck


def plot_loss(log_csv, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(open(log_csv)))
    tok = [int(r["tokens"]) / 1e6 for r in rows]
    loss = [float(r["loss"]) for r in rows]
    held = [(int(r["tokens"]) / 1e6, float(r["heldout_loss_1k"])) for r in rows
            if r["heldout_loss_1k"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(tok, loss, lw=0.6, alpha=0.6, label="train loss (batch)")
    if held:
        ax.plot(*zip(*held), "o-", ms=3, label="held-out loss, 1K windows")
    ax.set_ylim(top=min(8, max(loss)))  # before the phase labels, which sit at the top
    changes = [(tok[i], int(rows[i]["length"])) for i in range(len(rows))
               if i == 0 or rows[i]["length"] != rows[i - 1]["length"]]
    for x, length in changes:
        ax.axvline(x, color="grey", lw=0.5, ls=":")
        ax.text(x, ax.get_ylim()[1], f" {length}", fontsize=7, va="top", color="grey")
    ax.set_title("window length by phase: grey lines", fontsize=8)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend(loc="upper right")
    # The second stage's induction probe (train.py --repeat-tokens), where the log has it, on
    # its own axis: copying shows as a gap far above 0.
    ind = [(int(r["tokens"]) / 1e6, float(r["induction_first"]) - float(r["induction_second"]))
           for r in rows if r.get("induction_first")]
    if ind:
        ax2 = ax.twinx()
        ax2.plot(*zip(*ind), "s-", ms=3, color="tab:red")
        ax2.axhline(0, color="tab:red", lw=0.5, ls="--")
        ax2.set_ylabel("induction probe: NLL first - repeated (nats)", color="tab:red")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def check(model, out_dir, ckv):
    prompt = "def parse(self, text):\n    \"\"\"Return the tokens of text.\"\"\"\n    for line in"
    res = subprocess.run([ckv, "logits", "--model", out_dir, "--prompt", prompt, "--json"],
                         check=True, capture_output=True, text=True)
    got = torch.tensor(json.loads(res.stdout)["logits"])
    enc = subprocess.run([ckv, "tokenize", "--model", out_dir, "--text", prompt, "--json"],
                         check=True, capture_output=True, text=True)
    ids = torch.tensor(json.loads(enc.stdout)["ids"])[None]
    with torch.no_grad():
        want = model(ids)[0, -1].float()
    diff = (got - want).abs().max().item()
    print(f"check: max |ckv - torch| logit difference {diff:.2e} over {got.numel()} logits, "
          f"argmax {got.argmax().item()} vs {want.argmax().item()}")
    if diff > 1e-2 or got.argmax() != want.argmax():
        sys.exit("check failed: the engine does not compute what was trained")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", required=True, help="training run directory (checkpoint.pt, log.csv)")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", metavar="CKV", help="ckv binary to compare logits with")
    args = ap.parse_args()
    model, ck = load_model(os.path.join(args.run, "checkpoint.pt"))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as fh:
        json.dump(Config(**ck["config"]).hf_config(), fh, indent=2)
    safetensors_io.save(model.hf_state_dict(), os.path.join(args.out, "model.safetensors"),
                        metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        shutil.copy(os.path.join(args.tokenizer, f), os.path.join(args.out, f))
    cfg = json.load(open(os.path.join(args.tokenizer, "tokenizer_config.json")))
    cfg["model_max_length"] = ck["config"]["max_position_embeddings"]
    json.dump(cfg, open(os.path.join(args.out, "tokenizer_config.json"), "w"), indent=2)
    shutil.copy(os.path.join(args.run, "log.csv"), os.path.join(args.out, "training_log.csv"))
    plot_loss(os.path.join(args.run, "log.csv"), os.path.join(args.out, "loss_curve.png"))
    s = ck["state"]
    print(f"exported step {s['step']}, {s['tokens']:,} tokens, {s['seconds'] / 3600:.2f} h "
          f"-> {args.out}")
    if args.check:
        check(model, args.out, args.check)


if __name__ == "__main__":
    main()

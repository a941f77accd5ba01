#!/usr/bin/python3
"""Trains the long-context Llama model on the corpus (tools/train/corpus.py) with a length
curriculum, bf16 autocast on the CPU, and resumable checkpoints.

Every window starts with <s> followed by a random slice of the training stream (documents in a
seeded random order, each <s> ... </s>), which is what the engine feeds a model: BOS, then text.
A fixed number of tokens per step at every length: short windows early are cheap and teach
local structure; the last phases at 4K/8K teach the model to use far context.

A second stage (--repeat-tokens) continues past the base budget with a warm restart of the
learning rate and windows in which spans occur twice (a span of the window's own text copied
further on, or a span of random tokens written at two places). Natural text repeats too rarely
for a model trained on a few million tokens to learn to copy (induction heads); the doubled
spans make the copying signal dense, so the model learns to find an earlier occurrence of its
recent tokens and continue it, which is what long-context retrieval and the induction probe
need. With the defaults (every window, a pair per 128 tokens, spans of 8-64) about a fifth of
a window's tokens sit in doubled spans (pairs may overwrite each other); the rest is the text.

Copy stages (--copy-tokens, --copy-mix-tokens; --init-from starts them from an exported model)
follow: windows of periodic random tokens, where copying is most of the loss, then those mixed
with text holding paired spans. The second stage did not make induction heads form; these do
(tools/train/README.md has the measurements).
"""

import argparse
import csv
import glob
import json
import math
import os
import random
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from llama import Config, Llama  # noqa: E402

BOS, EOS = 1, 2
# (window length, share of the token budget)
CURRICULUM = [(512, 0.35), (1024, 0.30), (2048, 0.15), (4096, 0.17), (8192, 0.03)]
# The second stage's lengths (share of --repeat-tokens): long enough for far repeats.
REPEAT_CURRICULUM = [(1024, 0.35), (2048, 0.40), (4096, 0.25)]
FIRST_REGULAR_ID = 3  # <unk>, <s>, </s> come first in the SentencePiece vocabulary


def encode_split(sp, corpus, split, seed):
    files = sorted(glob.glob(os.path.join(corpus, split, "*.txt")))
    random.Random(seed).shuffle(files)
    ids = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            ids += [BOS] + sp.encode(fh.read()) + [EOS]
    return np.array(ids, dtype=np.int32)


def phase_at(tokens, budget, curriculum=CURRICULUM):
    done = 0
    for length, share in curriculum:
        done += share * budget
        if tokens < done:
            return length
    return curriculum[-1][0]


def lr_at(tokens, budget, peak, warmup_tokens):
    if tokens < warmup_tokens:
        return peak * (tokens + 1) / warmup_tokens
    progress = min(1.0, (tokens - warmup_tokens) / max(1, budget - warmup_tokens))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def add_repeats(row, rng, span_lo, span_hi, vocab, every):
    """Writes spans twice into row (BOS + tokens) in place: one pair per `every` tokens, each a
    span of the row's own text copied further on or, half the time, random tokens at both
    places."""
    n_tokens = len(row) - 1
    for _ in range(max(1, n_tokens // every)):
        n = int(rng.integers(span_lo, span_hi + 1))
        if 2 * n + 1 > n_tokens:
            continue
        first = int(rng.integers(1, n_tokens - 2 * n + 2))
        second = int(rng.integers(first + n, n_tokens - n + 2))
        if rng.random() < 0.5:
            span = rng.integers(FIRST_REGULAR_ID, vocab, size=n)
        else:
            span = row[first:first + n].copy()
        row[first:first + n] = span
        row[second:second + n] = span


def periodic_row(row, rng, vocab):
    """Overwrites row (BOS + tokens) after BOS with one random span of 8-64 tokens written
    again and again: past the first period every token is the one a period back."""
    n = int(rng.integers(8, 65))
    span = rng.integers(FIRST_REGULAR_ID, vocab, size=n)
    for p in range(1, len(row), n):
        k = min(n, len(row) - p)
        row[p:p + k] = span[:k]


def paired_spans_row(row, rng, vocab, far_pairs=0):
    """Writes spans of 16-64 tokens twice into row (BOS + text) without overlap: a pair, 0-199
    tokens of text between its halves (up to a quarter of the window in windows over 800), 0-99
    before the next pair; half the spans random tokens, half the row's own text copied further
    on. far_pairs pairs come first, each at a random place with a gap log-uniform between an
    eighth of the window and all of it: the sequential pairs' gaps stay under a quarter of the
    window, and a model copies only across gaps it was trained on."""
    length = len(row) - 1
    taken = np.zeros(len(row), dtype=bool)

    def span_of(pos, n):
        if rng.random() < 0.5:
            return rng.integers(FIRST_REGULAR_ID, vocab, size=n)
        return row[pos:pos + n].copy()

    for _ in range(far_pairs):
        n = int(rng.integers(16, 65))
        low, high = length // 8, length - 2 * n - 1
        if high <= low:
            break
        for _attempt in range(20):
            gap = int(math.exp(rng.uniform(math.log(low), math.log(high))))
            a = int(rng.integers(1, length - 2 * n - gap + 2))
            b = a + n + gap
            if not taken[a:a + n].any() and not taken[b:b + n].any():
                span = span_of(a, n)
                row[a:a + n] = span
                row[b:b + n] = span
                taken[a:a + n] = taken[b:b + n] = True
                break
    pos = 1
    while True:
        n = int(rng.integers(16, 65))
        gap = int(rng.integers(0, max(200, length // 4)))
        if pos + 2 * n + gap > length:
            return
        b = pos + n + gap
        if taken[pos:pos + n].any() or taken[b:b + n].any():
            pos += n  # a far pair is there: keep it whole
            continue
        span = span_of(pos, n)
        row[pos:pos + n] = span
        row[b:b + n] = span
        pos += 2 * n + gap + int(rng.integers(0, 100))


def windows(stream, length, count, rng, edit=None):
    """`count` windows of BOS + `length` tokens at random places of the stream, each handed to
    edit(row) to rewrite in place when given; returns (inputs, targets)."""
    starts = rng.integers(0, len(stream) - length, size=count)
    rows = [np.concatenate([[BOS], stream[s:s + length]]) for s in starts]
    if edit is not None:
        for row in rows:
            edit(row)
    t = torch.from_numpy(np.stack(rows).astype(np.int64))
    return t[:, :-1], t[:, 1:]


def copy_batch(stream, length, count, rng, vocab, periodic_share, far_pairs=0):
    """The copy stages' rows: `periodic_share` of them periodic random tokens, the rest text
    with paired spans."""
    def edit(row):
        if rng.random() < periodic_share:
            periodic_row(row, rng, vocab)
        else:
            paired_spans_row(row, rng, vocab, far_pairs)
    return windows(stream, length, count, rng, edit)


def batch(stream, length, count, rng, repeat_share=0.0, span=(8, 64), vocab=0, every=256):
    def edit(row):
        if rng.random() < repeat_share:
            add_repeats(row, rng, span[0], span[1], vocab, every)
    return windows(stream, length, count, rng, edit if repeat_share > 0 else None)


def loss_of(model, x, y):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def heldout_loss(model, stream, length, windows):
    # Fixed, evenly spaced windows: comparable across the whole run.
    model.eval()
    step = (len(stream) - length - 1) // windows
    total = 0.0
    for i in range(windows):
        s = i * step
        row = torch.from_numpy(np.concatenate([[BOS], stream[s:s + length]]).astype(np.int64))[None]
        total += loss_of(model, row[:, :-1], row[:, 1:]).item()
    model.train()
    return total / windows


@torch.no_grad()
def induction_nll(model, stream, vocab, span=32, gap=512, trials=8):
    """Mean NLL of tokens 2..span of a random-token span at its first and at its second
    occurrence, gap held-out tokens later (what `ckv eval induction` measures): copying shows
    as a second NLL far below the first. Fixed draws, comparable across the run."""
    model.eval()
    rng = np.random.default_rng(7)
    first = second = 0.0
    for _ in range(trials):
        s = rng.integers(FIRST_REGULAR_ID, vocab, size=span)
        at = int(rng.integers(0, len(stream) - gap))
        row = np.concatenate([[BOS], s, stream[at:at + gap], s]).astype(np.int64)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.from_numpy(row)[None]).float()[0]
        nll = F.cross_entropy(logits[:-1], torch.from_numpy(row[1:]), reduction="none")
        # nll[p] scores the token at p + 1: the first span sits at 1..span, the second at
        # span + gap + 1..2 span + gap; its first token cannot be predicted.
        first += nll[1:span].mean().item()
        second += nll[span + gap + 1:2 * span + gap].mean().item()
    model.train()
    return first / trials, second / trials


def save_checkpoint(path, state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint whole


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.model")
    ap.add_argument("--out", required=True, help="run directory: checkpoint.pt, log.csv")
    ap.add_argument("--tokens", type=float, default=10e6, help="training tokens")
    ap.add_argument("--repeat-tokens", type=float, default=0,
                    help="tokens of the second stage (doubled spans), after --tokens")
    ap.add_argument("--repeat-lr", type=float, default=1e-3, help="second stage's peak LR")
    ap.add_argument("--repeat-share", type=float, default=1.0,
                    help="share of the second stage's windows with doubled spans")
    ap.add_argument("--repeat-every", type=int, default=128,
                    help="one doubled span per this many tokens of such a window")
    ap.add_argument("--init-from", default="",
                    help="a model directory (config.json + model.safetensors, this trainer's "
                         "shape) to start from when --out holds no checkpoint")
    ap.add_argument("--copy-tokens", type=float, default=0,
                    help="third stage: windows of periodic random tokens (copying)")
    ap.add_argument("--copy-lr", type=float, default=1e-3, help="third stage's LR")
    ap.add_argument("--copy-mix-tokens", type=float, default=0,
                    help="fourth stage: half periodic windows, half text with paired spans")
    ap.add_argument("--copy-mix-lr", type=float, default=5e-4, help="fourth stage's LR")
    ap.add_argument("--copy-mix-length", type=int, default=512,
                    help="fourth stage's window (tokens); spans pair within a window")
    ap.add_argument("--copy-mix-far-pairs", type=int, default=0,
                    help="fourth stage: pairs per text window with gaps up to the whole window")
    ap.add_argument("--copy-step-tokens", type=int, default=4096,
                    help="tokens per optimizer step in the copy stages")
    ap.add_argument("--step-tokens", type=int, default=8192, help="tokens per optimizer step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup-tokens", type=float, default=0.3e6)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=704)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--checkpoint-minutes", type=float, default=5)
    ap.add_argument("--eval-every", type=int, default=50, help="steps between held-out evals")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.tokenizer, "tokenizer.model"))
    train_stream = encode_split(sp, args.corpus, "train", args.seed)
    heldout_stream = encode_split(sp, args.corpus, "heldout", args.seed)
    print(f"train {len(train_stream):,} tokens, held-out {len(heldout_stream):,} tokens", flush=True)

    cfg = Config(vocab_size=sp.get_piece_size(), hidden_size=args.hidden,
                 intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                 num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                 head_dim=args.hidden // args.heads, max_position_embeddings=CURRICULUM[-1][0])
    model = Llama(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    state = {"step": 0, "tokens": 0, "seconds": 0.0}
    rng = np.random.default_rng(args.seed)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        if ck["config"] != cfg.__dict__:
            sys.exit(f"{ckpt_path} holds a model of another shape ({ck['config']}); "
                     "use another --out or the same model flags")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {state['step']}, {state['tokens']:,} tokens", flush=True)
    elif args.init_from:
        with open(os.path.join(args.init_from, "config.json")) as fh:
            hf = json.load(fh)
        ours = cfg.hf_config()
        differ = [k for k in ("vocab_size", "hidden_size", "intermediate_size",
                              "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                              "head_dim", "rope_theta") if hf.get(k) != ours[k]]
        if differ:
            sys.exit(f"{args.init_from} holds a model of another shape ({', '.join(differ)}); "
                     "use its model flags")
        tensors = safetensors_io.load(os.path.join(args.init_from, "model.safetensors"))
        model.load_state_dict({k[len("model."):]: v.float() for k, v in tensors.items()})
        print(f"initialized from {args.init_from}", flush=True)
    print(f"model: {model.num_parameters() / 1e6:.2f}M parameters, {json.dumps(cfg.__dict__)}",
          flush=True)

    log_path = os.path.join(args.out, "log.csv")
    header = ["step", "tokens", "seconds", "length", "lr", "loss", "tokens_per_s",
              "heldout_loss_1k", "induction_first", "induction_second"]
    kept = []
    if os.path.exists(log_path):
        # Steps logged after the checkpoint a resumed run starts from are trained again.
        with open(log_path) as fh:
            kept = [r for r in csv.reader(fh) if r and r[0].isdigit() and int(r[0]) <= state["step"]]
    with open(log_path + ".tmp", "w", newline="") as fh:
        csv.writer(fh).writerows([header] + kept)
    os.replace(log_path + ".tmp", log_path)
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    last_ckpt = time.time()

    def checkpoint():
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "state": state, "config": cfg.__dict__, "args": vars(args),
                                    "numpy_rng": rng.bit_generator.state,
                                    "torch_rng": torch.get_rng_state()})

    base_end = args.tokens + args.repeat_tokens
    copy_end = base_end + args.copy_tokens
    total = copy_end + args.copy_mix_tokens
    vocab = cfg.vocab_size
    while state["tokens"] < total:
        copy_stage = state["tokens"] >= base_end
        if state["tokens"] < args.tokens:
            length = phase_at(state["tokens"], args.tokens)
            lr = lr_at(state["tokens"], args.tokens, args.lr, args.warmup_tokens)
            share = 0.0
        elif not copy_stage:  # second stage: a warm restart of its own schedule
            done = state["tokens"] - args.tokens
            length = phase_at(done, args.repeat_tokens, REPEAT_CURRICULUM)
            lr = lr_at(done, args.repeat_tokens, args.repeat_lr, 0.1e6)
            share = args.repeat_share
        else:
            # Copy stages (third, fourth): induction heads did not form from doubled spans in
            # text (tools/train/README.md); windows where copying is most of the loss make
            # them form within a few hundred steps, then text comes back beside them. A
            # 50-step warm-up to a constant LR, no weight decay (rare tokens' embeddings must
            # stay apart for random spans to be matched).
            periodic_only = state["tokens"] < copy_end
            start = base_end if periodic_only else copy_end
            length = 256 if periodic_only else args.copy_mix_length
            peak = args.copy_lr if periodic_only else args.copy_mix_lr
            lr = peak * min(1.0, ((state["tokens"] - start) // args.copy_step_tokens + 1) / 50)
            share = 1.0 if periodic_only else 0.5
        step_tokens = args.copy_step_tokens if copy_stage else args.step_tokens
        rows = max(1, step_tokens // length)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.param_groups[0]["weight_decay"] = 0.0 if copy_stage else args.weight_decay  # matrices
        t0 = time.time()
        if copy_stage:
            x, y = copy_batch(train_stream, length, rows, rng, vocab, share,
                              0 if periodic_only else args.copy_mix_far_pairs)
        else:
            x, y = batch(train_stream, length, rows, rng, share, vocab=vocab,
                         every=args.repeat_every)
        loss = loss_of(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.time() - t0
        state["step"] += 1
        state["tokens"] += rows * length
        state["seconds"] += dt
        held, ind = "", ("", "")
        if state["step"] % args.eval_every == 0 or state["tokens"] >= total:
            held = f"{heldout_loss(model, heldout_stream, 1024, 16):.4f}"
            ind = tuple(f"{v:.3f}" for v in induction_nll(model, heldout_stream, vocab))
        writer.writerow([state["step"], state["tokens"], f"{state['seconds']:.1f}", length,
                         f"{lr:.6f}", f"{loss.item():.4f}", f"{rows * length / dt:.0f}", held,
                         *ind])
        log.flush()
        if state["step"] % 10 == 0 or held:
            print(f"step {state['step']} tokens {state['tokens']:,} len {length} lr {lr:.2e} "
                  f"loss {loss.item():.3f} {rows * length / dt:.0f} tok/s"
                  + (f" held-out@1K {held} induction {ind[0]} -> {ind[1]}" if held else ""),
                  flush=True)
        if time.time() - last_ckpt > args.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    checkpoint()
    print(f"done: {state['tokens']:,} tokens in {state['seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Reference outputs of an exported model from this directory's PyTorch implementation (float32),
for the engine's tests: token ids of prompts (SentencePiece), last-position logits, and the
per-position NLL of one held-out window.

    golden.py MODEL_DIR TEXT_FILE OUT.json
"""

import json
import os
import sys

import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from llama import Config, Llama  # noqa: E402

PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "1:1 In the beginning God created the heaven and the earth.\n1:2 And the earth",
    "import os\nimport sys\n\n\nclass Parser:\n    def __init__(self, text):\n        self.text",
]
WINDOW = 2048


def main():
    model_dir, text_file, out = sys.argv[1:4]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    fields = Config.__dataclass_fields__
    model = Llama(Config(**{k: v for k, v in cfg.items() if k in fields}))
    weights = {k[len("model."):]: v for k, v in
               safetensors_io.load(os.path.join(model_dir, "model.safetensors")).items()}
    model.load_state_dict(weights)
    model.eval()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    golden = {"source": "tools/train/golden.py: PyTorch float32 (tools/train/llama.py), "
                        "SentencePiece ids with BOS", "prompts": []}
    with torch.no_grad():
        for p in PROMPTS:
            ids = [1] + sp.encode(p)
            logits = model(torch.tensor([ids]))[0, -1]
            top = torch.topk(logits, 2).values
            golden["prompts"].append({"prompt": p, "ids": ids, "argmax": int(logits.argmax()),
                                      "top1_top2_gap": float(top[0] - top[1]),
                                      "logits": [round(float(x), 6) for x in logits]})
        ids = [1] + sp.encode(open(text_file, encoding="utf-8").read())[:WINDOW - 1]
        logits = model(torch.tensor([ids]))[0, :-1]
        nll = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    golden["window"] = {"text": os.path.basename(text_file), "tokens": WINDOW,
                        "note": "BOS + the text's first 2047 tokens; nll[t] = -ln p(ids[t+1] | ids[0..t])",
                        "nll": [round(float(x), 6) for x in nll]}
    with open(out, "w") as fh:
        json.dump(golden, fh)
    print(f"{out}: {len(PROMPTS)} prompts, window mean NLL {float(nll.mean()):.4f}")


if __name__ == "__main__":
    main()

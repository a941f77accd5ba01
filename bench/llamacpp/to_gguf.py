#!/usr/bin/python3
"""Writes a Hugging Face Qwen2 directory (config.json, model.safetensors, tokenizer.json or
tokenizer.json.gz) as a GGUF v3 file that llama.cpp loads, so llama.cpp can decode the very
model `ckv bench model` decodes, side by side on one machine.

Why our own writer: Debian 12 packages neither llama.cpp's `convert_hf_to_gguf.py` nor its
`gguf` Python module, and we install no pip packages. The format is small (a header, typed
key/value metadata, tensor descriptors, aligned raw data); this writes what llama.cpp's
`qwen2` architecture reads, in the precision the source holds (bf16 matrices stay bf16, as
llama.cpp's converter keeps them with `--outtype bf16`; 1-D tensors become f32, as there).

Only Qwen2 (the shape ckv's benchmarks synthesize) is handled: its RoPE is rotate-half, which
llama.cpp's qwen2 graph uses as is, so no q/k permutation is needed (Llama's would be).
"""

import argparse
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np

ALIGN = 32  # general.alignment's default
GGML_F32, GGML_BF16 = 0, 30
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5
LLAMA_FTYPE_MOSTLY_BF16 = 32


def fail(msg):
    sys.exit(f"to_gguf: {msg}")


def read_safetensors(path):
    """Returns {name: (dtype, shape, memmap of the raw bytes)} without reading the data."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], raw[base + a:base + b])
    return out


def as_f32(dtype, blob, name):
    if dtype == "F32":
        return blob.view("<f4")
    if dtype == "BF16":
        return (blob.view("<u2").astype(np.uint32) << 16).view("<f4")
    if dtype == "F16":
        return blob.view("<f2").astype("<f4")
    fail(f"tensor {name}: dtype {dtype} is not handled")


def tensor_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] != ["model", "layers"]:
        return None
    layer, rest = parts[2], ".".join(parts[3:])
    table = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    return f"blk.{layer}.{table[rest]}" if rest in table else None


def load_tokenizer(model_dir):
    for name in ("tokenizer.json", "tokenizer.json.gz"):
        p = model_dir / name
        if p.exists():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(p, "rt", encoding="utf-8") as fh:
                return json.load(fh)
    fail(f"{model_dir}: no tokenizer.json or tokenizer.json.gz")


def vocabulary(tok, n_vocab):
    """Tokens, types and merges as llama.cpp's BPE ("gpt2") vocabulary wants them."""
    model = tok["model"]
    if model.get("type") != "BPE":
        fail(f"tokenizer model type {model.get('type')} is not BPE")
    by_id = {i: s for s, i in model["vocab"].items()}
    types = {i: TOKEN_NORMAL for i in by_id}
    for added in tok.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        types[added["id"]] = TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED
    if max(by_id) >= n_vocab:
        fail(f"tokenizer has id {max(by_id)} but the embedding has {n_vocab} rows")
    tokens, token_types = [], []
    for i in range(n_vocab):
        if i in by_id:
            tokens.append(by_id[i])
            token_types.append(types[i])
        else:  # embedding rows past the tokenizer (Qwen2 pads 151,665 to 151,936)
            tokens.append(f"[PAD{i}]")
            token_types.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    special = {a["content"]: a["id"] for a in tok.get("added_tokens", [])}
    return tokens, token_types, merges, special


class Writer:
    def __init__(self):
        self.kv = []

    def add(self, key, vtype, value):
        self.kv.append((key, vtype, value))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _value(self, vtype, value):
        if vtype == T_STRING:
            return self._str(value)
        if vtype == T_UINT32:
            return struct.pack("<I", value)
        if vtype == T_INT32:
            return struct.pack("<i", value)
        if vtype == T_FLOAT32:
            return struct.pack("<f", value)
        if vtype == T_BOOL:
            return struct.pack("<?", value)
        if vtype == T_ARRAY:
            etype, items = value
            if etype == T_INT32:
                body = np.asarray(items, dtype="<i4").tobytes()
            else:
                body = b"".join(self._value(etype, x) for x in items)
            return struct.pack("<IQ", etype, len(items)) + body
        fail(f"metadata type {vtype} is not handled")

    def write(self, path, tensors):
        """tensors: [(gguf name, ggml type, numpy shape, numpy array of the raw data)]."""
        infos, offset = [], 0
        for name, gtype, shape, data in tensors:
            dims = list(reversed(shape))  # GGUF lists the fastest-varying dimension first
            infos.append(self._str(name) + struct.pack("<I", len(dims)) +
                         struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", gtype, offset))
            offset += data.nbytes + (-data.nbytes % ALIGN)
        head = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(self.kv))
        head += b"".join(self._str(k) + struct.pack("<I", t) + self._value(t, v)
                         for k, t, v in self.kv)
        head += b"".join(infos)
        head += b"\0" * (-len(head) % ALIGN)
        with open(path, "wb") as fh:
            fh.write(head)
            for _, _, _, data in tensors:
                fh.write(memoryview(data).cast("B"))
                fh.write(b"\0" * (-data.nbytes % ALIGN))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()

    cfg = json.loads((args.model_dir / "config.json").read_text())
    if cfg.get("model_type") != "qwen2":
        fail(f"{args.model_dir}/config.json: model_type {cfg.get('model_type')!r}; "
             "only qwen2 is handled")
    st = read_safetensors(args.model_dir / "model.safetensors")
    n_vocab = st["model.embed_tokens.weight"][1][0]
    tokens, token_types, merges, special = vocabulary(load_tokenizer(args.model_dir), n_vocab)

    w = Writer()
    a = "qwen2"
    w.add("general.architecture", T_STRING, a)
    w.add("general.name", T_STRING, args.model_dir.name)
    w.add("general.file_type", T_UINT32, LLAMA_FTYPE_MOSTLY_BF16)
    w.add(f"{a}.block_count", T_UINT32, cfg["num_hidden_layers"])
    w.add(f"{a}.context_length", T_UINT32, cfg["max_position_embeddings"])
    w.add(f"{a}.embedding_length", T_UINT32, cfg["hidden_size"])
    w.add(f"{a}.feed_forward_length", T_UINT32, cfg["intermediate_size"])
    w.add(f"{a}.attention.head_count", T_UINT32, cfg["num_attention_heads"])
    w.add(f"{a}.attention.head_count_kv", T_UINT32, cfg["num_key_value_heads"])
    w.add(f"{a}.rope.freq_base", T_FLOAT32, float(cfg["rope_theta"]))
    w.add(f"{a}.attention.layer_norm_rms_epsilon", T_FLOAT32, float(cfg["rms_norm_eps"]))
    w.add("tokenizer.ggml.model", T_STRING, "gpt2")
    w.add("tokenizer.ggml.pre", T_STRING, "qwen2")
    w.add("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens))
    w.add("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, token_types))
    w.add("tokenizer.ggml.merges", T_ARRAY, (T_STRING, merges))
    eos = cfg.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    if eos is not None:
        w.add("tokenizer.ggml.eos_token_id", T_UINT32, eos)
    if cfg.get("bos_token_id") is not None:
        w.add("tokenizer.ggml.bos_token_id", T_UINT32, cfg["bos_token_id"])
    if "<|endoftext|>" in special:
        w.add("tokenizer.ggml.padding_token_id", T_UINT32, special["<|endoftext|>"])
    w.add("tokenizer.ggml.add_bos_token", T_BOOL, False)

    tensors = []
    for hf in sorted(st):
        name = tensor_name(hf)
        if name is None:
            fail(f"tensor {hf} has no qwen2 GGUF name")
        dtype, shape, blob = st[hf]
        if len(shape) == 2 and dtype == "BF16":
            tensors.append((name, GGML_BF16, shape, blob))
        else:  # norms and biases, and any f32 matrix, as f32
            tensors.append((name, GGML_F32, shape, np.ascontiguousarray(as_f32(dtype, blob, hf))))
    w.write(args.out, tensors)
    print(f"{args.out}: {len(tensors)} tensors, {len(tokens)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()

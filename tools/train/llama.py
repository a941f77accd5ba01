"""The Llama architecture our engine runs (RMSNorm, rotate-half RoPE, GQA, SwiGLU, tied
embeddings), written so its parameters are Hugging Face's LlamaForCausalLM tensors one to one."""

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 8
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-5
    rope_theta: float = 100000.0

    def hf_config(self, dtype="float32"):
        c = asdict(self)
        c.update({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                  "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": True,
                  "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
                  "initializer_range": 0.02, "use_cache": True, "bos_token_id": 1,
                  "eos_token_id": 2, "torch_dtype": dtype})
        return c


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * xf).to(x.dtype)


def rope_tables(cfg, length, device=None):
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
    t = torch.arange(length, dtype=torch.float32)
    freqs = torch.outer(t, inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


QUERY_BLOCK = 512


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, cfg.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(b, t, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = c.num_attention_heads // c.num_key_value_heads
        # Grouped-query attention: each KV head serves `groups` query heads. Queries go in blocks
        # that see only the keys up to their block's end: the causal half of the score matrix is
        # never computed, and the softmax stays in the compute dtype (no T x T float copies).
        q = (q * (1.0 / math.sqrt(c.head_dim))).view(b, c.num_key_value_heads, groups, t, c.head_dim)
        outs = []
        for s in range(0, t, QUERY_BLOCK):
            e = min(t, s + QUERY_BLOCK)
            qb = q[:, :, :, s:e].reshape(b, c.num_key_value_heads, groups * (e - s), c.head_dim)
            scores = torch.matmul(qb, k[:, :, :e].transpose(-1, -2))
            scores = scores.view(b, c.num_key_value_heads, groups, e - s, e)
            scores = scores.masked_fill(mask[s:e, :e], float("-inf"))
            p = torch.softmax(scores, dim=-1).view(b, c.num_key_value_heads, groups * (e - s), e)
            outs.append(torch.matmul(p, v[:, :, :e]).view(b, c.num_attention_heads, e - s, c.head_dim))
        out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        out = out.transpose(1, 2).reshape(b, t, -1)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.apply(self._init)
        # GPT-2's scaled init of the residual projections keeps deep stacks stable early on.
        for layer in self.layers:
            for w in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * cfg.num_hidden_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = rope_tables(self.cfg, t)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)  # True above the diagonal: masked
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(self.norm(x), self.embed_tokens.weight)  # tied LM head

    def hf_state_dict(self):
        """Tensor names as Hugging Face's LlamaForCausalLM has them (tied: no lm_head)."""
        return {"model." + k: v for k, v in self.state_dict().items()}

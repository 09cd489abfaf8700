"""A short PyTorch reference of what a Switchboard model computes.

It follows docs/moe_semantics.md rule by rule, with autograd for the
gradients, and uses Hugging Face tensor names so that the same dict of
tensors feeds transformers' Llama / Mixtral models and this code. It is
checked against transformers on the cases transformers can express (dense
Llama with GQA, dropless renormalised top-2 Mixtral) in make_golden.py;
capacity dropping, raw gates, router z-loss, interleaved layers and tied
embeddings have no Hugging Face decoder and rest on this file alone.

Everything runs in the dtype of the parameters (float64 for the goldens).
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F


@dataclass
class RefConfig:
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    ffn_dim: int  # dense blocks
    expert_ffn_dim: int  # each expert
    rope_theta: float
    norm_eps: float
    tie_embeddings: bool
    moe_layers: List[bool]  # [num_layers]
    num_experts: int = 4
    top_k: int = 2
    normalize_top_k: bool = False
    capacity_factor: float = 0.0  # <= 0: dropless
    min_capacity: int = 0
    aux_loss_coef: float = 0.0
    z_loss_coef: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


def parameter_shapes(cfg: RefConfig) -> Dict[str, tuple]:
    """HF name -> shape, in the order of Model::Parameters()."""
    d, hd = cfg.d_model, cfg.head_dim
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, d)}
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "self_attn.q_proj.weight"] = (cfg.num_heads * hd, d)
        shapes[p + "self_attn.k_proj.weight"] = (cfg.num_kv_heads * hd, d)
        shapes[p + "self_attn.v_proj.weight"] = (cfg.num_kv_heads * hd, d)
        shapes[p + "self_attn.o_proj.weight"] = (d, cfg.num_heads * hd)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
        if cfg.moe_layers[i]:
            shapes[p + "block_sparse_moe.gate.weight"] = (cfg.num_experts, d)
            for e in range(cfg.num_experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                shapes[q + "w1.weight"] = (cfg.expert_ffn_dim, d)
                shapes[q + "w3.weight"] = (cfg.expert_ffn_dim, d)
                shapes[q + "w2.weight"] = (d, cfg.expert_ffn_dim)
        else:
            shapes[p + "mlp.gate_proj.weight"] = (cfg.ffn_dim, d)
            shapes[p + "mlp.up_proj.weight"] = (cfg.ffn_dim, d)
            shapes[p + "mlp.down_proj.weight"] = (d, cfg.ffn_dim)
    shapes["model.norm.weight"] = (d,)
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, d)
    return shapes


def is_norm(name: str) -> bool:
    return name.endswith("layernorm.weight") or name == "model.norm.weight"


def init_parameters(cfg: RefConfig, seed: int, std: float) -> Dict[str, torch.Tensor]:
    """Matrices ~ N(0, std); RMSNorm scales ~ 1 + N(0, 0.1^2) (not all ones, so
    that a norm applied with the wrong scale shows up). float64."""
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in parameter_shapes(cfg).items():
        if is_norm(name):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = std * torch.randn(shape, generator=gen, dtype=torch.float64)
        params[name] = t
    return params


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    # x * rsqrt(mean(x^2) + eps) * w, all in the working dtype.
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(seq_len: int, head_dim: int, theta: float, dtype):
    """cos, sin [S, hd]: HF rotate-half layout, inv_freq_i = 1 / theta^(2i/hd)
    computed in float64 (HF computes it in float32)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def attention(x, p, prefix, cfg: RefConfig):
    """x [B, S, D] -> [B, S, D]; causal GQA with RoPE, scale 1/sqrt(hd), no bias."""
    b, s, _ = x.shape
    h, hkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = (x @ p[prefix + "q_proj.weight"].T).view(b, s, h, hd).transpose(1, 2)  # [B, H, S, hd]
    k = (x @ p[prefix + "k_proj.weight"].T).view(b, s, hkv, hd).transpose(1, 2)
    v = (x @ p[prefix + "v_proj.weight"].T).view(b, s, hkv, hd).transpose(1, 2)
    cos, sin = rope_tables(s, hd, cfg.rope_theta, x.dtype)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    # Query head j reads kv head j // (H / Hkv) (HF repeat_kv).
    k = k.repeat_interleave(h // hkv, dim=1)
    v = v.repeat_interleave(h // hkv, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # [B, H, S, S]
    causal = torch.ones(s, s, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    ctx = torch.softmax(scores, dim=-1) @ v  # [B, H, S, hd]
    ctx = ctx.transpose(1, 2).reshape(b, s, h * hd)
    return ctx @ p[prefix + "o_proj.weight"].T


def swiglu(x, w1, w3, w2):
    # W2 (silu(W1 x) * (W3 x))
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def expert_capacity(factor: float, top_k: int, tokens: int, num_experts: int, min_capacity: int):
    """C = max(min_capacity, ceil(factor * k * T / E)); None (no limit) when factor <= 0."""
    if factor <= 0:
        return None
    return max(min_capacity, math.ceil(factor * top_k * tokens / num_experts))


def top_k_ids(probs: torch.Tensor, k: int) -> torch.Tensor:
    """[T, E] -> [T, k] int64 by descending prob, ties to the lower expert id
    (k passes of argmax, which returns the first maximum)."""
    work = probs.detach().clone()
    rows = torch.arange(work.shape[0])
    ids = []
    for _ in range(k):
        i = work.argmax(dim=-1)
        ids.append(i)
        work[rows, i] = float("-inf")
    return torch.stack(ids, dim=1)


def assign_slots(ids: torch.Tensor, num_experts: int, capacity: Optional[int]) -> torch.Tensor:
    """[T, k] expert ids -> [T, k] slot in the expert's buffer, -1 = dropped.
    Choice rank first (all first choices, then all second ...), token order
    within a rank."""
    t_count, k = ids.shape
    fill = [0] * num_experts
    slots = torch.full((t_count, k), -1, dtype=torch.int64)
    for r in range(k):
        for t in range(t_count):
            e = int(ids[t, r])
            if capacity is None or fill[e] < capacity:
                slots[t, r] = fill[e]
                fill[e] += 1
    return slots


def moe_layer(x, p, prefix, cfg: RefConfig):
    """x [T, D] (the T tokens of one micro-batch) -> (y [T, D], router record)."""
    t_count = x.shape[0]
    e_count, k = cfg.num_experts, cfg.top_k
    logits = x @ p[prefix + "gate.weight"].T  # [T, E]
    probs = torch.softmax(logits, dim=-1)
    ids = top_k_ids(probs, k)  # [T, k]
    chosen = probs.gather(1, ids)  # [T, k]
    gates = chosen / chosen.sum(-1, keepdim=True) if cfg.normalize_top_k else chosen
    capacity = expert_capacity(cfg.capacity_factor, k, t_count, e_count, cfg.min_capacity)
    slots = assign_slots(ids, e_count, capacity)
    kept = slots >= 0

    y = torch.zeros_like(x)
    for e in range(e_count):
        # An expert without tokens still runs (on 0 rows) so that its weights
        # get zero gradients, not None: AdamW must still decay them.
        tok, rank = torch.where((ids == e) & kept)
        q = f"{prefix}experts.{e}."
        out = swiglu(x[tok], p[q + "w1.weight"], p[q + "w3.weight"], p[q + "w2.weight"])
        y = y.index_add(0, tok, out * gates[tok, rank].unsqueeze(-1))

    routed = torch.bincount(ids.flatten(), minlength=e_count)  # before dropping
    kept_counts = torch.bincount(ids[kept], minlength=e_count)
    f = routed.to(x.dtype) / (t_count * k)  # a count: no gradient
    aux = e_count * (f * probs.mean(0)).sum()
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    entropy = -(probs * torch.log(probs)).sum(-1).mean()
    record = dict(x=x.detach(), router_logits=logits, probs=probs, ids=ids, gates=gates, slots=slots,
                  routed=routed, kept=kept_counts, capacity=capacity, aux=aux, z=z,
                  entropy=entropy, dropped=int((~kept).sum()))
    return y, record


def forward(p: Dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, cfg: RefConfig,
            moe=None):
    """inputs, targets [B, S] int64 -> dict with logits [B*S, V], ce, aux, z,
    total and per-MoE-layer records keyed by block index. moe: a drop-in for
    moe_layer (same arguments; its record needs only "aux" and "z"), e.g. a
    vectorised variant for timing."""
    moe = moe or moe_layer
    b, s = inputs.shape
    x = p["model.embed_tokens.weight"][inputs]  # [B, S, D]
    routers = {}
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        h = x + attention(rms_norm(x, p[pre + "input_layernorm.weight"], cfg.norm_eps), p,
                          pre + "self_attn.", cfg)
        hn = rms_norm(h, p[pre + "post_attention_layernorm.weight"], cfg.norm_eps).reshape(b * s, -1)
        if cfg.moe_layers[i]:
            ffn, routers[i] = moe(hn, p, pre + "block_sparse_moe.", cfg)
        else:
            q = pre + "mlp."
            ffn = swiglu(hn, p[q + "gate_proj.weight"], p[q + "up_proj.weight"],
                         p[q + "down_proj.weight"])
        x = h + ffn.view(b, s, -1)
    head = p["model.embed_tokens.weight"] if cfg.tie_embeddings else p["lm_head.weight"]
    logits = rms_norm(x, p["model.norm.weight"], cfg.norm_eps).reshape(b * s, -1) @ head.T
    ce = F.cross_entropy(logits, targets.reshape(-1))
    zero = logits.new_zeros(())
    aux = sum((r["aux"] for r in routers.values()), zero)
    z = sum((r["z"] for r in routers.values()), zero)
    total = ce + cfg.aux_loss_coef * aux + cfg.z_loss_coef * z
    return dict(logits=logits, ce=ce, aux=aux, z=z, total=total, routers=routers)

"""A short PyTorch reference of what a Switchboard model computes.

It follows docs/moe_semantics.md rule by rule, with autograd for the
gradients, and uses Hugging Face tensor names so that the same dict of
tensors feeds transformers' Llama / Mixtral models and this code. It is
checked against transformers on the cases transformers can express (dense
Llama with GQA, dropless renormalised top-2 Mixtral) in make_golden.py;
capacity dropping, raw gates, router z-loss, interleaved layers and tied
embeddings have no Hugging Face decoder and rest on this file alone.

The routing variants (noisy top-k gating and its CV loss, GShard's random
second expert, V-MoE batch priority, expert choice, DeepSeekMoE shared
experts, the auxiliary-loss-free selection bias, expert dropout) follow
docs/moe_semantics.md "Routing variants"; their random draws come from a
Python copy of moe/core/rng.h, keyed as the C++ keys them.

Everything runs in the dtype of the parameters (float64 for the goldens).
"""

import math
from dataclasses import dataclass, field
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
    # Routing variants (moe.* of configs/switchboard.proto).
    routing: str = "token_choice"  # or "expert_choice"
    noisy_gating: bool = False
    balance_loss: str = "switch"  # or "cv" (CV_IMPORTANCE_LOAD)
    second_expert_policy: str = "all"  # or "random"
    batch_prioritized: bool = False
    aux_free_rate: float = 0.0  # > 0: a selection bias per MoE layer
    num_shared_experts: int = 0
    shared_expert_ffn_dim: int = 0  # 0: expert_ffn_dim
    expert_dropout: float = 0.0
    seed: int = 0  # train.seed: keys the random draws

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def shared_width(self) -> int:
        return self.num_shared_experts * (self.shared_expert_ffn_dim or self.expert_ffn_dim)


@dataclass
class Ctx:
    """Where a forward pass is in training (moe/layers/step_context.h)."""
    training: bool = True
    step: int = 0
    micro_batch: int = 0


# ------------------------------------------------- moe/core/rng.h, in Python
_M64 = (1 << 64) - 1
JITTER_TAG, NOISE_TAG = 0x6a177e5, 0x6e015e6a7e
SECOND_EXPERT_TAG, DROPOUT_TAG = 0x5ec0de4e7, 0xd20b0e7


def mix64(z: int) -> int:
    z = (z + 0x9e3779b97f4a7c15) & _M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & _M64
    return z ^ (z >> 31)


def stream_key(*parts: int) -> int:
    h = 0x5eed
    for p in parts:
        h = mix64(h ^ mix64(p & _M64))
    return h


def uniform_at(key: int, i: int) -> float:
    return (mix64(key ^ mix64(i)) >> 11) * (1.0 / 9007199254740992.0)


def normal_at(key: int, i: int) -> float:
    u1 = 1.0 - uniform_at(key, 2 * i)
    u2 = uniform_at(key, 2 * i + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def layer_key(cfg: "RefConfig", ctx: Ctx, layer: int, tag: int) -> int:
    return stream_key(cfg.seed, ctx.step, ctx.micro_batch, layer, tag)


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
            if cfg.noisy_gating:
                shapes[p + "block_sparse_moe.gate_noise.weight"] = (cfg.num_experts, d)
            for e in range(cfg.num_experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                shapes[q + "w1.weight"] = (cfg.expert_ffn_dim, d)
                shapes[q + "w3.weight"] = (cfg.expert_ffn_dim, d)
                shapes[q + "w2.weight"] = (d, cfg.expert_ffn_dim)
            if cfg.num_shared_experts:
                q = f"{p}block_sparse_moe.shared_experts."
                shapes[q + "gate_proj.weight"] = (cfg.shared_width, d)
                shapes[q + "up_proj.weight"] = (cfg.shared_width, d)
                shapes[q + "down_proj.weight"] = (d, cfg.shared_width)
        else:
            shapes[p + "mlp.gate_proj.weight"] = (cfg.ffn_dim, d)
            shapes[p + "mlp.up_proj.weight"] = (cfg.ffn_dim, d)
            shapes[p + "mlp.down_proj.weight"] = (d, cfg.ffn_dim)
    shapes["model.norm.weight"] = (d,)
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, d)
    return shapes


def buffer_shapes(cfg: RefConfig) -> Dict[str, tuple]:
    """Non-trainable tensors saved with the weights (Model::Buffers())."""
    if cfg.aux_free_rate <= 0:
        return {}
    return {f"model.layers.{i}.block_sparse_moe.gate.e_score_correction_bias": (cfg.num_experts,)
            for i in range(cfg.num_layers) if cfg.moe_layers[i]}


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


def assign_slots(ids: torch.Tensor, num_experts: int, capacity: Optional[int],
                 order: Optional[torch.Tensor] = None,
                 active: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[T, k] expert ids -> [T, k] slot in the expert's buffer, -1 = dropped.
    Choice rank first (all first choices, then all second ...), token order
    (or `order`, batch priority) within a rank; a choice with active 0 takes
    no slot."""
    t_count, k = ids.shape
    order = range(t_count) if order is None else [int(t) for t in order]
    fill = [0] * num_experts
    slots = torch.full((t_count, k), -1, dtype=torch.int64)
    for r in range(k):
        for t in order:
            if active is not None and not bool(active[t, r]):
                continue
            e = int(ids[t, r])
            if capacity is None or fill[e] < capacity:
                slots[t, r] = fill[e]
                fill[e] += 1
    return slots


def softplus(x: torch.Tensor) -> torch.Tensor:
    # log(1 + e^x) without overflow, as moe/ops/cpu/routing_variants.cc.
    return torch.where(x > 0, x + torch.log1p(torch.exp(-x.abs())), torch.log1p(torch.exp(-x.abs())))


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """var / (mean^2 + 1e-10), population variance (tensor2tensor's cv_squared)."""
    mean = v.mean()
    return ((v - mean) ** 2).mean() / (mean * mean + 1e-10)


def noisy_top_k_balance_loss(gates, ids, clean, noisy, std, k: int):
    """Shazeer et al. 2017 appendix A: CV(Importance)^2 + CV(Load)^2 with
    Importance_e = sum of e's gates and Load_e = sum_t Phi((clean - threshold) / std),
    threshold = the k-th largest noisy logit of the token without e's own."""
    t_count, e_count = clean.shape
    importance = torch.zeros(e_count, dtype=gates.dtype).index_add(0, ids.reshape(-1), gates.reshape(-1))
    ranked = top_k_ids(noisy, k + 1)  # descending, ties to the lower id, as the C++
    top_vals = noisy.gather(1, ranked)  # differentiable: the threshold's gradient flows
    in_top = torch.zeros(t_count, e_count, dtype=torch.bool)
    in_top[torch.arange(t_count).unsqueeze(1), ranked[:, :k]] = True
    threshold = torch.where(in_top, top_vals[:, k:k + 1], top_vals[:, k - 1:k])
    z = (clean - threshold) / std
    load = (0.5 * torch.erfc(-z / math.sqrt(2.0))).sum(0)
    return cv_squared(importance) + cv_squared(load)


def expert_dropout_mask(cfg: RefConfig, ctx: Ctx, layer: int, tokens, expert: int, width: int,
                        dtype) -> torch.Tensor:
    """[n, width] inverted-dropout multipliers of expert `expert` on its rows
    (tokens): a unit is kept iff U(StreamKey(base, t, e), f) >= rate."""
    base = layer_key(cfg, ctx, layer, DROPOUT_TAG)
    scale = 1.0 / (1.0 - cfg.expert_dropout)
    rows = []
    for t in tokens.tolist():
        key = stream_key(base, t, expert)
        rows.append([scale if uniform_at(key, f) >= cfg.expert_dropout else 0.0 for f in range(width)])
    return torch.tensor(rows, dtype=dtype).reshape(len(rows), width)


def expert_ffn(x, p, q, cfg: RefConfig, ctx: Ctx, layer: int, tok, e: int):
    """SwiGLU expert e on its rows x[tok], with expert dropout on its hidden units."""
    xt = x[tok]  # one gather: its backward sums both uses first, as swiglu() does
    h = F.silu(xt @ p[q + "w1.weight"].T) * (xt @ p[q + "w3.weight"].T)
    if cfg.expert_dropout > 0 and ctx.training:
        h = h * expert_dropout_mask(cfg, ctx, layer, tok, e, h.shape[1], h.dtype)
    return h @ p[q + "w2.weight"].T


def moe_layer(x, p, prefix, cfg: RefConfig, layer: int = 0, ctx: Optional[Ctx] = None):
    """x [T, D] (the T tokens of one micro-batch) -> (y [T, D], router record).
    layer / ctx key the random draws (block index; training, step, micro-batch)."""
    ctx = ctx or Ctx()
    t_count = x.shape[0]
    e_count, k = cfg.num_experts, cfg.top_k
    clean = x @ p[prefix + "gate.weight"].T  # [T, E]
    logits, noisy_parts = clean, None
    if cfg.noisy_gating:
        # Shazeer et al. 2017 eq. 4, noise in training only.
        std = softplus(x @ p[prefix + "gate_noise.weight"].T)
        key = layer_key(cfg, ctx, layer, NOISE_TAG)
        normal = torch.tensor([normal_at(key, i) if ctx.training else 0.0
                               for i in range(t_count * e_count)], dtype=x.dtype).reshape(t_count, e_count)
        logits = clean + normal * std
        noisy_parts = (clean, std)
    probs = torch.softmax(logits, dim=-1)
    capacity = expert_capacity(cfg.capacity_factor, k, t_count, e_count, cfg.min_capacity)
    margin = float("inf")  # how far the discrete decisions are from flipping

    if cfg.routing == "expert_choice":
        c = min(capacity, t_count)
        slots = torch.full((t_count, e_count), -1, dtype=torch.int64)
        for e in range(e_count):
            col = probs[:, e].detach()
            order = torch.sort(col, descending=True, stable=True).indices
            slots[order[:c], e] = torch.arange(c)
            if c < t_count:
                margin = min(margin, float(col[order[c - 1]] - col[order[c]]))
        ids = torch.arange(e_count).repeat(t_count, 1)
        gates = probs
        active = torch.ones_like(ids, dtype=torch.bool)
    else:
        bias = p.get(prefix + "gate.e_score_correction_bias")
        scores = probs if bias is None else probs + bias
        ids = top_k_ids(scores, k)  # [T, k]
        sorted_scores = scores.detach().sort(dim=-1, descending=True).values
        if k < e_count:
            margin = float((sorted_scores[:, k - 1] - sorted_scores[:, k]).min())
        chosen = probs.gather(1, ids)  # [T, k]
        gates = chosen / chosen.sum(-1, keepdim=True) if cfg.normalize_top_k else chosen
        active = torch.ones_like(ids, dtype=torch.bool)
        if cfg.second_expert_policy == "random" and ctx.training:
            key = layer_key(cfg, ctx, layer, SECOND_EXPERT_TAG)
            c64 = chosen.detach().double()
            g2 = c64[:, 1] / (c64[:, 0] + c64[:, 1])
            u = torch.tensor([uniform_at(key, t) for t in range(t_count)], dtype=torch.float64)
            active[:, 1] = u < 2.0 * g2
            margin = min(margin, float((u - 2.0 * g2).abs().min()))
        order = None
        if cfg.batch_prioritized:
            first = chosen[:, 0].detach()
            order = torch.sort(first, descending=True, stable=True).indices
            gaps = first[order[:-1]] - first[order[1:]]
            margin = min(margin, float(gaps.min()) if len(gaps) else margin)
        slots = assign_slots(ids, e_count, capacity, order, active)
    kept = slots >= 0

    y = torch.zeros_like(x)
    for e in range(e_count):
        # An expert without tokens still runs (on 0 rows) so that its weights
        # get zero gradients, not None: AdamW must still decay them.
        tok, rank = torch.where((ids == e) & kept)
        out = expert_ffn(x, p, f"{prefix}experts.{e}.", cfg, ctx, layer, tok, e)
        y = y.index_add(0, tok, out * gates[tok, rank].unsqueeze(-1))
    if cfg.num_shared_experts:
        q = prefix + "shared_experts."
        y = y + swiglu(x, p[q + "gate_proj.weight"], p[q + "up_proj.weight"], p[q + "down_proj.weight"])

    kept_counts = torch.bincount(ids[kept], minlength=e_count)
    # Before dropping; an expert's choice routes exactly what it takes.
    routed = kept_counts if cfg.routing == "expert_choice" else torch.bincount(ids[active], minlength=e_count)
    if cfg.routing == "expert_choice":
        aux = x.new_zeros(())  # balanced by construction: no load-balancing loss
        dropped = int((~kept.any(dim=1)).sum())  # tokens no expert took
    elif cfg.balance_loss == "cv":
        clean_, std_ = noisy_parts
        aux = noisy_top_k_balance_loss(gates, ids, clean_, logits, std_, k)
        dropped = int((active & ~kept).sum())
    else:
        f = routed.to(x.dtype) / (t_count * k)  # a count: no gradient
        aux = e_count * (f * probs.mean(0)).sum()
        dropped = int((active & ~kept).sum())
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    entropy = -(probs * torch.log(probs)).sum(-1).mean()
    record = dict(x=x.detach(), router_logits=logits, probs=probs, ids=ids, gates=gates, slots=slots,
                  routed=routed, kept=kept_counts, capacity=capacity, aux=aux, z=z,
                  entropy=entropy, dropped=dropped, margin=margin)
    return y, record


def update_selection_biases(p: Dict[str, torch.Tensor], routers: Dict[int, dict], cfg: RefConfig):
    """Auxiliary-loss-free balancing after an optimizer step (one micro-batch
    per step): b_e += rate * sign(mean(load) - load_e), load = routed choices."""
    for i, rec in routers.items():
        name = f"model.layers.{i}.block_sparse_moe.gate.e_score_correction_bias"
        load = rec["routed"].double()
        gap = load.sum() - cfg.num_experts * load  # sign(mean - load), exact on counts
        with torch.no_grad():
            p[name] += cfg.aux_free_rate * torch.sign(gap).to(p[name].dtype)


def forward(p: Dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, cfg: RefConfig,
            moe=None, ctx: Optional[Ctx] = None):
    """inputs, targets [B, S] int64 -> dict with logits [B*S, V], ce, aux, z,
    total and per-MoE-layer records keyed by block index. moe: a drop-in for
    moe_layer (same first four arguments; its record needs only "aux" and
    "z"), e.g. a vectorised variant for timing. ctx keys the
    routing variants' random draws."""
    if moe is None:
        moe = lambda hn, p_, prefix, c, i: moe_layer(hn, p_, prefix, c, layer=i, ctx=ctx)  # noqa: E731
    else:
        moe_plain = moe
        moe = lambda hn, p_, prefix, c, i: moe_plain(hn, p_, prefix, c)  # noqa: E731
    b, s = inputs.shape
    x = p["model.embed_tokens.weight"][inputs]  # [B, S, D]
    routers = {}
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        h = x + attention(rms_norm(x, p[pre + "input_layernorm.weight"], cfg.norm_eps), p,
                          pre + "self_attn.", cfg)
        hn = rms_norm(h, p[pre + "post_attention_layernorm.weight"], cfg.norm_eps).reshape(b * s, -1)
        if cfg.moe_layers[i]:
            ffn, routers[i] = moe(hn, p, pre + "block_sparse_moe.", cfg, i)
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

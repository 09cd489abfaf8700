"""Hugging Face transformers models for the golden cases, run in exact float64.

transformers 4.40 rounds through float32 in a few places even after
`model.double()`: RMSNorm casts its input to float32, RoPE builds cos/sin
from a float32 inv_freq, attention and the Mixtral router take softmax with
dtype=float32, and *ForCausalLM casts the logits to float32. Goldens meant
as exact references cannot carry those ~1e-7 roundings, so
`exact_float64()` patches exactly those spots (only for float64 inputs) and
`hf_forward` applies lm_head itself instead of calling the float32 cast.
make_golden.py also runs the unpatched models and checks that they differ
from the patched ones by float32 rounding only.
"""

import contextlib
from typing import Dict

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM
from transformers.models.llama import modeling_llama
from transformers.models.mixtral import modeling_mixtral
from transformers.models.nllb_moe import NllbMoeConfig
from transformers.models.nllb_moe.modeling_nllb_moe import NllbMoeTop2Router
from transformers.models.switch_transformers import SwitchTransformersConfig
from transformers.models.switch_transformers import modeling_switch_transformers as switch

from reference_model import RefConfig


def _rms_norm_forward(original):
    def forward(self, hidden_states):
        if hidden_states.dtype != torch.float64:
            return original(self, hidden_states)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))
    return forward


def _inv_freq64(dim: int, base: float) -> torch.Tensor:
    return 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def _llama_rope_forward(original):
    @torch.no_grad()
    def forward(self, x, position_ids):
        if x.dtype != torch.float64:
            return original(self, x, position_ids)
        freqs = position_ids[:, :, None].to(torch.float64) * _inv_freq64(self.dim, self.base)
        emb = torch.cat((freqs, freqs), dim=-1)  # [B, S, hd]
        return emb.cos(), emb.sin()
    return forward


def _mixtral_rope_forward(original):
    def forward(self, x, seq_len=None):
        if x.dtype != torch.float64:
            return original(self, x, seq_len)
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float64), _inv_freq64(self.dim, self.base))
        emb = torch.cat((freqs, freqs), dim=-1)  # [S, hd]
        return emb.cos(), emb.sin()
    return forward


@contextlib.contextmanager
def default_dtype(dtype):
    """Mixtral's 4.40 causal mask is torch.full(..., finfo(model dtype).min) in
    the *default* dtype, which overflows float32 for a float64 model."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


@contextlib.contextmanager
def exact_float64():
    """Within: float64 HF Llama / Mixtral compute every op in float64."""
    saved = [
        (modeling_llama.LlamaRMSNorm, "forward"),
        (modeling_mixtral.MixtralRMSNorm, "forward"),
        (modeling_llama.LlamaRotaryEmbedding, "forward"),
        (modeling_mixtral.MixtralRotaryEmbedding, "forward"),
        (torch.nn.functional, "softmax"),
    ]
    originals = [getattr(obj, name) for obj, name in saved]
    softmax = torch.nn.functional.softmax

    def softmax64(input, dim=None, _stacklevel=3, dtype=None):
        # HF asks for dtype=float32 (attention probs, Mixtral router); keep float64.
        if dtype == torch.float32 and input.dtype == torch.float64:
            dtype = None
        return softmax(input, dim=dim, _stacklevel=_stacklevel, dtype=dtype)

    modeling_llama.LlamaRMSNorm.forward = _rms_norm_forward(originals[0])
    modeling_mixtral.MixtralRMSNorm.forward = _rms_norm_forward(originals[1])
    modeling_llama.LlamaRotaryEmbedding.forward = _llama_rope_forward(originals[2])
    modeling_mixtral.MixtralRotaryEmbedding.forward = _mixtral_rope_forward(originals[3])
    torch.nn.functional.softmax = softmax64
    try:
        yield
    finally:
        for (obj, name), value in zip(saved, originals):
            setattr(obj, name, value)


def build_hf_model(cfg: RefConfig, params: Dict[str, torch.Tensor], max_seq_len: int):
    """LlamaForCausalLM (every block dense) or MixtralForCausalLM (every block
    MoE, dropless renormalised top-k) holding `params`, in float64."""
    common = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        hidden_act="silu", max_position_embeddings=max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings, attention_dropout=0.0,
        use_cache=False, attn_implementation="eager")
    if not any(cfg.moe_layers):
        model = LlamaForCausalLM(LlamaConfig(intermediate_size=cfg.ffn_dim, attention_bias=False,
                                             rope_scaling=None, pretraining_tp=1, **common))
    else:
        assert all(cfg.moe_layers), "Mixtral has no dense blocks"
        assert cfg.normalize_top_k and cfg.capacity_factor <= 0, "Mixtral is renormalised dropless"
        model = MixtralForCausalLM(MixtralConfig(
            intermediate_size=cfg.expert_ffn_dim, num_local_experts=cfg.num_experts,
            num_experts_per_tok=cfg.top_k, router_jitter_noise=0.0, output_router_logits=True,
            router_aux_loss_coef=cfg.aux_loss_coef, sliding_window=None, **common))
    assert model.config._attn_implementation == "eager"
    model = model.double()
    missing, unexpected = model.load_state_dict(params, strict=False)
    assert not unexpected, unexpected
    # Only a tied lm_head may be missing from params (it is the embedding).
    assert all(n == "lm_head.weight" and cfg.tie_embeddings for n in missing), missing
    model.train()  # no dropout anywhere, no jitter (router_jitter_noise = 0)
    return model


def hf_forward(model, inputs: torch.Tensor):
    """inputs [B, S] -> (logits [B*S, V] in the model dtype, router logits per
    layer [B*S, E] (empty for Llama)). Applies lm_head itself: the
    *ForCausalLM forward would cast the logits to float32."""
    is_moe = isinstance(model, MixtralForCausalLM)
    kwargs = dict(output_router_logits=True) if is_moe else {}
    with default_dtype(model.dtype):
        out = model.model(input_ids=inputs, use_cache=False, return_dict=True, **kwargs)
    logits = model.lm_head(out.last_hidden_state)
    return logits.reshape(-1, logits.shape[-1]), (list(out.router_logits) if is_moe else [])


def hf_load_balancing_per_layer(router_logits: torch.Tensor, num_experts: int, top_k: int):
    """transformers' Mixtral load_balancing_loss_func on ONE layer (balanced value k)."""
    return modeling_mixtral.load_balancing_loss_func((router_logits,), num_experts, top_k)


def hf_total_loss(model, cfg: RefConfig, inputs, targets):
    """Our total loss computed from HF's logits and router logits:
    CE_mean + aux_coef * sum_l lbl_l / k + z_coef * sum_l mean_t lse_t^2,
    with lbl_l transformers' load_balancing_loss_func on layer l alone.
    That function counts choices in float32 (expert_mask.float()), which is
    exact only when B*S is a power of two: the Mixtral case uses one."""
    logits, router_logits = hf_forward(model, inputs)
    ce = F.cross_entropy(logits, targets.reshape(-1))
    hf_lbl = [hf_load_balancing_per_layer(rl, cfg.num_experts, cfg.top_k) for rl in router_logits]
    aux = [v / cfg.top_k for v in hf_lbl]
    z = [torch.logsumexp(rl, dim=-1).pow(2).mean() for rl in router_logits]
    zero = logits.new_zeros(())
    aux_sum, z_sum = sum(aux, zero), sum(z, zero)
    total = ce + cfg.aux_loss_coef * aux_sum + cfg.z_loss_coef * z_sum
    return dict(logits=logits, router_logits=router_logits, ce=ce, hf_lbl=hf_lbl, aux_layers=aux,
                z_layers=z, aux=aux_sum, z=z_sum, total=total)


def hf_capacity_router(x: torch.Tensor, gate_weight: torch.Tensor, top_k: int, capacity: int,
                       batch_prioritized: bool = False, router_logits: torch.Tensor = None):
    """transformers' own capacity routers on one micro-batch x [T, D] taken as
    one routing group (ours is the micro-batch; HF's Switch groups by
    sequence, so x is passed as a single [1, T, D] sequence), in float64:
      top-1: SwitchTransformersTop1Router (token order fills an expert's C
             slots; raw prob as gate) plus its router_z_loss_func and
             load_balancing_loss_func;
      top-2: NllbMoeTop2Router, second_expert_policy "all", gates
             renormalised over the two choices before dropping (our
             normalize_top_k); without batch prioritisation all first
             choices, then all second choices, in token order; with it
             (V-MoE, batch_prioritized) in order of the token's largest prob.
             router_logits, when given, replace x W^T (noisy gating).
    -> dict of what each computes."""
    t_count, d_model = x.shape
    num_experts = gate_weight.shape[0]
    # The configs accept float32 / 16-bit router dtypes only; the routers read
    # self.dtype at call time, set to float64 below.
    common = dict(d_model=d_model, num_experts=num_experts, expert_capacity=capacity,
                  router_bias=False, router_dtype="float32", router_ignore_padding_tokens=False)
    with torch.no_grad():
        if top_k == 1:
            router = switch.SwitchTransformersTop1Router(
                SwitchTransformersConfig(router_jitter_noise=0.0, **common))
            router.dtype = torch.float64
            router.classifier.double().weight.copy_(gate_weight)
            router.train()
            mask, gate, logits = router(x[None])
            probs = torch.softmax(logits, dim=-1)
            return dict(kept_onehot=mask[0], gates=gate[0, :, 0], router_logits=logits[0],
                        z=switch.router_z_loss_func(logits),
                        aux=switch.load_balancing_loss_func(probs, probs.argmax(-1)))
        assert top_k == 2, "transformers has capacity routers for top-1 and top-2 only"
        router = NllbMoeTop2Router(NllbMoeConfig(
            second_expert_policy="all", normalize_router_prob_before_dropping=True,
            batch_prioritized_routing=batch_prioritized, moe_eval_capacity_token_fraction=1.0,
            **common))
        router.dtype = torch.float64
        router.classifier.double().weight.copy_(gate_weight)
        router.train()
        if router_logits is not None:
            _, combine = router.route_tokens(router_logits.detach().clone(), torch.float64)
        else:
            _, combine = router(x[None])  # [T, E]: renormalised gate where kept, else 0
        return dict(renormalised_kept_gates=combine)

"""The golden cases of make_golden.py and the TrainConfig text each is written
with (tests/reference/README.md lists them). Split from make_golden.py to
keep each file short; make_golden.py imports everything from here.
"""

import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field

import reference_model as ref

FORMAT_VERSION = "1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Optim:
    lr: float = 1e-2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0


@dataclass
class Case:
    name: str
    description: str
    reference: str  # "transformers" or "reference_model.py"
    cfg: ref.RefConfig
    moe_layer_interval: int
    batch: int
    seq_len: int
    seed: int
    steps: int = 6
    init_std: float = 0.15
    max_seq_len: int = 64
    optim: Optim = field(default_factory=Optim)
    expect_drops: bool = False
    bias_std: float = 0.0  # initial auxiliary-loss-free selection bias ~ N(0, bias_std^2)

    @property
    def has_variants(self) -> bool:
        """Uses a routing variant (docs/moe_semantics.md, "Routing variants")."""
        c = self.cfg
        return (c.routing != "token_choice" or c.noisy_gating or c.second_expert_policy != "all"
                or c.batch_prioritized or c.aux_free_rate > 0 or c.num_shared_experts > 0
                or c.expert_dropout > 0)


def _variant_cfg(**kw) -> ref.RefConfig:
    """The routing-variant cases: narrower experts (16) to keep the files small."""
    kw.setdefault("expert_ffn_dim", 16)
    return _cfg(**kw)


def _cfg(**kw) -> ref.RefConfig:
    base = dict(vocab_size=64, d_model=32, num_heads=4, num_kv_heads=2, ffn_dim=64,
                expert_ffn_dim=32, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False,
                num_experts=4)
    base.update(kw)
    base.setdefault("num_layers", len(base["moe_layers"]))
    return ref.RefConfig(**base)


CASES = [
    Case("llama_dense_gqa",
         "(a) Dense Llama: 2 blocks, every FFN dense, GQA 4 query / 2 kv heads, untied LM head. "
         "Golden computed by transformers.LlamaForCausalLM in float64.",
         "transformers",
         _cfg(moe_layers=[False, False]), moe_layer_interval=0, batch=3, seq_len=8, seed=11, optim=Optim(grad_clip=4.0)),
    Case("mixtral_top2_dropless",
         "(b) All-MoE Mixtral: 2 blocks, 4 experts, top-2 renormalised gates, dropless, GQA 4/2, "
         "untied head, aux + z router losses. Golden computed by transformers.MixtralForCausalLM "
         "in float64 (router logits from HF; aux = HF load_balancing_loss_func on one layer / k; "
         "z-loss from HF's router logits). B*S = 32, a power of two, keeps HF's float32 "
         "choice counts exact.",
         "transformers",
         _cfg(moe_layers=[True, True], top_k=2, normalize_top_k=True, capacity_factor=0.0,
              min_capacity=4, aux_loss_coef=0.02, z_loss_coef=0.005, rope_theta=1e6),
         moe_layer_interval=1, batch=2, seq_len=16, seed=22, optim=Optim(grad_clip=3.7)),
    Case("switch_top1_capacity",
         "(c) Switch: 2 MoE blocks, 4 experts, top-1 raw gates, capacity factor 1.0 with "
         "T = 30 tokens -> C = max(2, ceil(7.5)) = 8, so tokens really drop; z-loss on; "
         "MQA (4 query / 1 kv head). Golden computed by tests/reference/reference_model.py.",
         "reference_model.py",
         _cfg(moe_layers=[True, True], num_kv_heads=1, top_k=1, normalize_top_k=False,
              capacity_factor=1.0, min_capacity=2, aux_loss_coef=0.1, z_loss_coef=0.01,
              norm_eps=1e-6),
         moe_layer_interval=1, batch=3, seq_len=10, seed=36, expect_drops=True,
         optim=Optim(grad_clip=2.75)),
    Case("interleaved_tied_top2",
         "(d) Interleaved: 4 blocks, moe_layer_interval 2 -> blocks 1 and 3 MoE, 0 and 2 dense; "
         "tied embeddings; 4 experts, top-2 raw gates, capacity factor 1.25 with T = 36 -> "
         "C = max(4, ceil(22.5)) = 23. Golden computed by tests/reference/reference_model.py.",
         "reference_model.py",
         _cfg(moe_layers=[False, True, False, True], tie_embeddings=True, top_k=2,
              normalize_top_k=False, capacity_factor=1.25, min_capacity=4, aux_loss_coef=0.05,
              z_loss_coef=0.002, rope_theta=500000.0),
         moe_layer_interval=2, batch=3, seq_len=12, seed=59, expect_drops=True,
         optim=Optim(grad_clip=3.0)),
    # Routing variants (docs/moe_semantics.md "Routing variants"), computed by
    # reference_model.py; only (e)'s capacity routing has a transformers twin.
    Case("noisy_top2_cv_bpr",
         "(e) Noisy top-k gating (Shazeer et al. 2017) with its CV(importance)^2 + CV(load)^2 "
         "loss, top-2 renormalised gates, batch-prioritized routing (V-MoE) with capacity "
         "factor 1.0 over T = 30 tokens -> C = max(2, ceil(15)) = 15; z-loss. Golden computed "
         "by tests/reference/reference_model.py; kept choices checked against transformers' "
         "NllbMoeTop2Router(batch_prioritized_routing=True) on the same noisy logits.",
         "reference_model.py",
         _variant_cfg(moe_layers=[True, True], top_k=2, normalize_top_k=True, capacity_factor=1.0,
                      min_capacity=2, aux_loss_coef=0.05, z_loss_coef=0.01, noisy_gating=True,
                      balance_loss="cv", batch_prioritized=True, seed=76),
         moe_layer_interval=1, batch=3, seq_len=10, seed=76, expect_drops=True,
         optim=Optim(grad_clip=3.0)),
    Case("gshard_random_top2_dropout",
         "(f) GShard: top-2 renormalised gates, the second expert dispatched only when "
         "2 * g2 > u (u keyed by seed, step, micro-batch, layer, token), capacity factor 1.25 "
         "over T = 36 -> C = max(4, ceil(22.5)) = 23; expert dropout 0.2 on the experts' "
         "hidden units (Switch / ST-MoE). Golden computed by tests/reference/reference_model.py.",
         "reference_model.py",
         _variant_cfg(moe_layers=[True, True], top_k=2, normalize_top_k=True, capacity_factor=1.25,
                      min_capacity=4, aux_loss_coef=0.05, z_loss_coef=0.002,
                      second_expert_policy="random", expert_dropout=0.2, seed=85),
         moe_layer_interval=1, batch=3, seq_len=12, seed=85, expect_drops=True,
         optim=Optim(grad_clip=3.0)),
    Case("expert_choice_shared",
         "(g) Expert-choice routing (Zhou et al. 2022): each of 4 experts takes its top-C tokens "
         "by prob, C = ceil(0.5 * 2 * 30 / 4) = 8 of T = 30 (capacity factor 0.5, k = 2), so "
         "some tokens get no expert; "
         "no load-balancing loss; one always-on shared expert (DeepSeekMoE); z-loss. Golden "
         "computed by tests/reference/reference_model.py.",
         "reference_model.py",
         _variant_cfg(moe_layers=[True, True], top_k=2, routing="expert_choice",
                      capacity_factor=0.5, min_capacity=2, z_loss_coef=0.01,
                      num_shared_experts=1, seed=97),
         moe_layer_interval=1, batch=3, seq_len=10, seed=97, expect_drops=True,
         optim=Optim(grad_clip=3.0)),
    Case("deepseek_shared_aux_free",
         "(h) DeepSeekMoE / DeepSeek-V3: 8 fine-grained experts of width 8 (dense FFN 64), "
         "top-4 renormalised, dropless, 2 shared experts of width 8 (one MLP of width 16), "
         "no auxiliary loss; an auxiliary-loss-free selection bias (initial values from the "
         "weights file) moved by 0.02 * sign(mean load - load) after each step. Golden "
         "computed by tests/reference/reference_model.py.",
         "reference_model.py",
         _variant_cfg(moe_layers=[False, True], num_experts=8, expert_ffn_dim=8, top_k=4,
                      normalize_top_k=True, capacity_factor=0.0, min_capacity=4,
                      z_loss_coef=0.001, num_shared_experts=2, aux_free_rate=0.02, seed=85),
         moe_layer_interval=2, batch=2, seq_len=12, seed=85, bias_std=0.05,
         optim=Optim(grad_clip=3.0)),
]


# ----------------------------------------------------------------------------- config


def variant_fields(c: ref.RefConfig) -> str:
    """The moe.* lines of the routing variants that differ from their defaults."""
    lines = []
    if c.routing == "expert_choice":
        lines.append("routing: EXPERT_CHOICE")
    if c.noisy_gating:
        lines.append("noisy_gating: true")
    if c.balance_loss == "cv":
        lines.append("balance_loss: CV_IMPORTANCE_LOAD")
    if c.second_expert_policy == "random":
        lines.append("second_expert_policy: RANDOM")
    if c.batch_prioritized:
        lines.append("batch_prioritized_routing: true")
    if c.num_shared_experts:
        lines.append(f"num_shared_experts: {c.num_shared_experts}")
    if c.shared_expert_ffn_dim:
        lines.append(f"shared_expert_ffn_dim: {c.shared_expert_ffn_dim}")
    if c.aux_free_rate > 0:
        lines.append(f"aux_free_bias_update_rate: {c.aux_free_rate!r}")
    if c.expert_dropout > 0:
        lines.append(f"expert_dropout: {c.expert_dropout!r}")
    return "".join(f"  {line}\n" for line in lines)


def textproto(case: Case) -> str:
    c, o = case.cfg, case.optim
    cf = c.capacity_factor
    head = "\n".join("# " + line for line in textwrap.wrap(case.description, 76))
    return f"""# Golden case {case.name}: tests/golden/{case.name}_golden.safetensors.
{head}
# Written by tests/reference/make_golden.py (format_version {FORMAT_VERSION}); do not edit.
# The weights are {case.name}_weights.safetensors (float64, HF names); init_std
# only records the std they were drawn with. The evaluation capacity factor
# equals the training one so that `switchboard forward` reproduces the golden.
model {{
  vocab_size: {c.vocab_size}
  d_model: {c.d_model}
  num_layers: {c.num_layers}
  num_heads: {c.num_heads}
  num_kv_heads: {c.num_kv_heads}
  ffn_dim: {c.ffn_dim}
  expert_ffn_dim: {c.expert_ffn_dim}
  rope_theta: {c.rope_theta!r}
  norm_eps: {c.norm_eps!r}
  max_seq_len: {case.max_seq_len}
  tie_embeddings: {str(c.tie_embeddings).lower()}
  init_std: {case.init_std!r}
}}
moe {{
  num_experts: {c.num_experts}
  top_k: {c.top_k}
  capacity_factor_train: {cf!r}
  capacity_factor_eval: {cf!r}
  min_capacity: {c.min_capacity}
  normalize_top_k: {str(c.normalize_top_k).lower()}
  router_jitter_eps: 0.0
  aux_loss_coef: {c.aux_loss_coef!r}
  z_loss_coef: {c.z_loss_coef!r}
  moe_layer_interval: {case.moe_layer_interval}
{variant_fields(c)}}}
parallel {{
  expert_parallel_size: 1
}}
optimizer {{
  name: ADAMW
  lr: {o.lr!r}
  weight_decay: {o.weight_decay!r}
  grad_clip: {o.grad_clip!r}
  beta1: {o.beta1!r}
  beta2: {o.beta2!r}
  eps: {o.eps!r}
  decay_embeddings: false
  decay_norms: false
}}
schedule {{
  kind: CONSTANT
  warmup_steps: 0
}}
train {{
  steps: {case.steps}
  micro_batch_size: {case.batch}
  seq_len: {case.seq_len}
  grad_accum_steps: 1
  seed: {case.seed}
  log_every: 1
}}
data {{
  train_path: ""
  val_path: ""
}}
"""


def check_textproto(path: str) -> str:
    """Parses the file against configs/switchboard.proto with protoc, if present."""
    if shutil.which("protoc") is None:
        return "protoc not found: textproto not parsed"
    with open(path, "rb") as f:
        r = subprocess.run(["protoc", "-I", os.path.join(REPO, "configs"),
                            "--encode=switchboard.TrainConfig", "switchboard.proto"],
                           stdin=f, capture_output=True)
    assert r.returncode == 0, f"{path} does not parse as TrainConfig: {r.stderr.decode()}"
    return "parsed by protoc as switchboard.TrainConfig"

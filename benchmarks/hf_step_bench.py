#!/usr/bin/env python3
"""Hugging Face MixtralForCausalLM's time for the training step that
model_step_bench timed: the baseline of benchmarks/cpu_step_vs_hf.sh and of
benchmarks/scaling.py (docs/benchmarks.md).

Runs under the newest PyTorch + transformers from PyPI (/opt/sb-latest-venv,
made by tests/reference/setup_latest_env.sh or benchmarks/setup_latest_env.sh):

  /opt/sb-latest-venv/bin/python benchmarks/hf_step_bench.py \\
      --switchboard_json DIR/switchboard.json --threads 2 --mode eager|compile [--json OUT]

What it does, in order:
1. Builds MixtralForCausalLM (float32, CPU, transformers' default attention
   and experts implementations: "sdpa" and "grouped_mm") with the shape that
   model_step_bench wrote, loads the same initial weights (our Hugging Face
   checkpoint names; transformers 5 fuses each layer's experts into
   gate_up_proj [E, 2F, D] = [w1; w3] and down_proj [E, D, F] = w2) and the
   same token batch.
2. The loss is Switchboard's (docs/moe_semantics.md): mean cross-entropy +
   aux_coef * sum over layers of E * sum_e f_e P_e + z_coef * sum over layers
   of mean logsumexp(logits)^2, computed from the router logits that
   MixtralModel returns (output_router_logits=True). HF's own Mixtral loss
   concatenates all layers and has no z-loss (tests/reference/REFERENCES.md),
   so it is not used; its forward, backward and modules are HF's.
   HF routes dropless with renormalised top-k gates: the Switchboard side must
   run moe.capacity_factor_train <= 0, moe.normalize_top_k = true and no
   jitter, which this script checks.
3. Validates before timing: the total, cross-entropy, aux and z losses must
   agree with Switchboard's within 64 ulp of their value, and every gradient
   tensor within 256 * eps32 * sqrt(layers) of its largest entry (the bounds
   of the PyTorch 1.13 check this replaces; a routing difference moves an
   expert gradient by ~10%). --mode compile validates the compiled step.
4. Times forward (with the loss), backward and torch.optim.AdamW (fused=True,
   PyTorch's fastest CPU AdamW; the same groups as optim/adamw.h) with the
   same warmup and iterations as model_step_bench. --mode compile wraps the
   loss function in torch.compile (inductor, default options): the warmup
   steps include compilation, whose time is reported separately.
Threads: torch.set_num_threads(N); set OMP_NUM_THREADS=N too.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file
from transformers import MixtralConfig, MixtralForCausalLM


def check_supported(m):
    """HF Mixtral runs every block as MoE, dropless, renormalised top-k, no jitter."""
    problems = []
    if not all(m["moe_layers"]):
        problems.append("every block must be MoE (moe.moe_layer_interval=1)")
    if m["capacity_factor"] > 0:
        problems.append("HF Mixtral is dropless: set moe.capacity_factor_train=0")
    if not m["normalize_top_k"]:
        problems.append("HF Mixtral renormalises top-k gates: set moe.normalize_top_k=true")
    if m["router_jitter_eps"] != 0:
        problems.append("set moe.router_jitter_eps=0")
    if m["d_model"] % m["num_heads"]:
        problems.append("d_model must be a multiple of num_heads")
    if problems:
        sys.exit("hf_step_bench: the Switchboard run is not a Mixtral step: " + "; ".join(problems))


def build_model(m, seq_len):
    cfg = MixtralConfig(
        vocab_size=m["vocab_size"], hidden_size=m["d_model"], intermediate_size=m["expert_ffn_dim"],
        num_hidden_layers=m["num_layers"], num_attention_heads=m["num_heads"],
        num_key_value_heads=m["num_kv_heads"], head_dim=m["d_model"] // m["num_heads"],
        max_position_embeddings=max(seq_len, 1), rms_norm_eps=m["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": m["rope_theta"]},
        tie_word_embeddings=m["tie_embeddings"], num_local_experts=m["num_experts"],
        num_experts_per_tok=m["top_k"], router_jitter_noise=0.0, attention_dropout=0.0,
        use_cache=False, output_router_logits=True)
    return MixtralForCausalLM(cfg).float().train()


def load_weights(model, ours, m):
    """Copies our tensors (HF Mixtral checkpoint names, per-expert w1/w3/w2)
    into transformers 5's modules. Returns {our name: (param, slice fn)} so
    gradients can be compared by our names."""
    params = dict(model.named_parameters())
    view = {}  # our name -> (param, index function on a tensor of that param's shape)
    F_ = m["expert_ffn_dim"]
    for name, t in ours.items():
        if ".block_sparse_moe.experts." in name:
            layer, rest = name.split(".block_sparse_moe.experts.")
            e, w = int(rest.split(".")[0]), rest.split(".")[1]
            if w == "w2":
                p = params[f"{layer}.mlp.experts.down_proj"]
                view[name] = (p, lambda x, e=e: x[e])
            else:
                p = params[f"{layer}.mlp.experts.gate_up_proj"]
                lo = 0 if w == "w1" else F_
                view[name] = (p, lambda x, e=e, lo=lo: x[e, lo:lo + F_])
        elif ".block_sparse_moe.gate." in name:
            p = params[name.replace(".block_sparse_moe.gate.", ".mlp.gate.")]
            view[name] = (p, lambda x: x)
        else:
            p = params[name]
            view[name] = (p, lambda x: x)
        target = view[name][1](p.data)
        if tuple(target.shape) != tuple(t.shape):
            sys.exit(f"hf_step_bench: {name} has shape {tuple(t.shape)}, HF slot {tuple(target.shape)}")
        target.copy_(t.float())
    covered = {id(p) for p, _ in view.values()}
    missing = [n for n, p in params.items() if id(p) not in covered]
    if missing:
        sys.exit(f"hf_step_bench: no weights for {sorted(missing)}")
    return view


def make_loss_fn(model, m):
    """(input_ids [B, S], targets [B, S]) -> (total, ce, aux, z), Switchboard's loss on HF's model."""
    E, k = m["num_experts"], m["top_k"]
    aux_coef, z_coef = m["aux_loss_coef"], m["z_loss_coef"]

    def loss_fn(input_ids, targets):
        out = model.model(input_ids=input_ids, output_router_logits=True, use_cache=False)
        logits = model.lm_head(out.last_hidden_state)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        aux = logits.new_zeros(())
        z = logits.new_zeros(())
        for router_logits in out.router_logits:  # [T, E] per layer
            lf = router_logits.float()
            probs = torch.softmax(lf, dim=-1)
            ids = torch.topk(probs, k, dim=-1).indices  # the choices HF's router made
            f = torch.zeros(E, dtype=lf.dtype).scatter_add_(
                0, ids.reshape(-1), torch.ones(ids.numel(), dtype=lf.dtype)) / ids.numel()
            aux = aux + E * (f * probs.mean(0)).sum()
            z = z + torch.logsumexp(lf, dim=-1).pow(2).mean()
        return ce + aux_coef * aux + z_coef * z, ce, aux, z
    return loss_fn


def make_adamw(model, o):
    """torch.optim.AdamW(fused=True) with Switchboard's groups (optim/adamw.h)."""
    def decays(name):
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            return o["decay_norms"]
        return o["decay_embeddings"] if name == "model.embed_tokens.weight" else True
    named = list(model.named_parameters())
    groups = [dict(params=[p for n, p in named if decays(n)], weight_decay=o["weight_decay"]),
              dict(params=[p for n, p in named if not decays(n)], weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], fused=True)


def validate(sb, losses, view, num_layers):
    """Losses and gradients against Switchboard's; exits non-zero on disagreement."""
    eps32 = torch.finfo(torch.float32).eps
    theirs = sb["loss"]
    failures, errors = [], {}
    for name, value in zip(("total", "ce", "aux", "z"), losses):
        v = value.item()
        err = abs(v - theirs[name])
        errors[f"loss.{name}"] = err
        if err > 64 * eps32 * max(1.0, abs(theirs[name])):
            failures.append(f"{name} loss: HF {v:.9g}, switchboard {theirs[name]:.9g}, |diff| {err:.3g}")
    if theirs["dropped_fraction"] != 0:
        failures.append(f"switchboard dropped {theirs['dropped_fraction']:.4g} of choices (HF is dropless)")
    grads = load_file(sb["batch_file"])
    worst = (0.0, "")
    for name, (p, index) in view.items():
        g_ref, g = grads["grad." + name].double(), index(p.grad).double()
        rel = ((g - g_ref).abs().max() / g_ref.abs().max().clamp_min(1e-30)).item()
        worst = max(worst, (rel, name))
    errors["grad.max_rel"], errors["grad.worst_tensor"] = worst
    if worst[0] > 256 * eps32 * math.sqrt(num_layers):
        failures.append(f"gradient {worst[1]}: max |diff| / max |grad| = {worst[0]:.3g}")
    if failures:
        sys.exit("hf_step_bench: HF and Switchboard disagree on the validation batch:\n  " + "\n  ".join(failures))
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switchboard_json", required=True, help="model_step_bench's report")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--json", help="report path (default: DIR/hf_<mode>.json)")
    args = ap.parse_args()
    with open(args.switchboard_json) as f:
        sb = json.load(f)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m = sb["model"]
    check_supported(m)
    model = build_model(m, sb["seq_len"])
    view = load_weights(model, load_file(sb["weights"]), m)
    tokens = load_file(sb["batch_file"])["tokens"].long()  # [B, S+1]
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    loss_fn = make_loss_fn(model, m)
    step_fn = torch.compile(loss_fn) if args.mode == "compile" else loss_fn
    t0 = time.perf_counter()
    losses = step_fn(inputs, targets)
    losses[0].backward()
    first_step_s = time.perf_counter() - t0  # includes compilation for --mode compile
    errors = validate(sb, losses, view, m["num_layers"])
    print(f"validated ({args.mode}): total loss {losses[0].item():.6f} (|diff| {errors['loss.total']:.2g}), "
          f"gradients within {errors['grad.max_rel']:.2g} relative ({errors['grad.worst_tensor']})")

    adamw = make_adamw(model, sb["optimizer"])
    fwd, bwd, opt, step = [], [], [], []
    for i in range(sb["warmup"] + sb["iters"]):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = step_fn(inputs, targets)[0]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        adamw.step()
        t3 = time.perf_counter()
        if i >= sb["warmup"]:
            fwd.append(1e3 * (t1 - t0))
            bwd.append(1e3 * (t2 - t1))
            opt.append(1e3 * (t3 - t2))
            step.append(1e3 * (t2 - t0))
    tokens_per_step = sb["batch"] * sb["seq_len"]
    step_ms = statistics.median(step)
    train_ms = statistics.median(s + o for s, o in zip(step, opt))
    report = dict(
        impl=f"hf_{args.mode}", mode=args.mode, torch_version=torch.__version__,
        transformers_version=transformers.__version__, threads=torch.get_num_threads(),
        attn_implementation=model.config._attn_implementation,
        experts_implementation=model.config._experts_implementation,
        blas=torch.__config__.show().count("MKL") and "MKL" or "other", validation=errors,
        first_step_s=round(first_step_s, 3), warmup=sb["warmup"], iters=sb["iters"],
        fwd_ms=[round(v, 3) for v in fwd], bwd_ms=[round(v, 3) for v in bwd],
        adamw_ms=[round(v, 3) for v in opt], step_ms=round(step_ms, 3), train_step_ms=round(train_ms, 3),
        tokens_per_s=round(tokens_per_step / step_ms * 1e3, 1),
        train_tokens_per_s=round(tokens_per_step / train_ms * 1e3, 1),
        flops_per_token=sb["flops_per_token"],
        gflops=round(sb["flops_per_token"] * tokens_per_step / step_ms / 1e6, 2))
    path = args.json or os.path.join(os.path.dirname(args.switchboard_json), f"hf_{args.mode}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"hf {args.mode} (torch {torch.__version__}, transformers {transformers.__version__}) | "
          f"{report['threads']} threads | fwd {statistics.median(fwd):.1f} bwd {statistics.median(bwd):.1f} "
          f"adamw {statistics.median(opt):.1f} ms | {report['tokens_per_s']:.0f} tokens/s | "
          f"{report['gflops']:.1f} GFLOP/s (fwd+bwd, median of {sb['iters']}); first step {first_step_s:.1f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch's time for the training step that model_step_bench timed
(docs/performance.md): the baseline of benchmarks/cpu_step_vs_torch.sh.

Loads the weights and token batch that build/benchmarks/model_step_bench wrote
(its JSON names them and carries the model and optimizer options and its
losses) into tests/reference/reference_model.py, float32 on the CPU; checks
that the losses, the dropped choices and every gradient equal Switchboard's
(fails loudly otherwise); then times forward (with the loss),
loss.backward() and torch.optim.AdamW.step() with the same warmup and
iterations, gradients set to None before each step.

  /opt/sb-reference-venv/bin/python benchmarks/torch_step_bench.py \\
      --switchboard_json DIR/switchboard.json --threads 2 [--moe vectorized] [--json OUT]

--moe reference: reference_model.moe_layer as written for clarity (slots
  assigned in a Python loop over all T*k choices, ~16k iterations per step).
--moe vectorized (default): the same routing (same top-k ids and ties, same
  slots: all first choices, then all second, token order within a rank)
  with a cumulative sum, and each expert run on its tokens by index_select,
  matmul and index_add_, the way Hugging Face's Mixtral block is written.
Both run the rest of reference_model.forward unchanged (attention with a
masked [B, H, S, S] score matrix: PyTorch 1.13 has no fused attention).
Threads: torch.set_num_threads(N). Set OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS to N as well (read when the libraries load); the BLAS
library that torch loaded is recorded.
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
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import reference_model as ref  # noqa: E402


def moe_layer_vectorized(x, p, prefix, cfg: ref.RefConfig):
    """ref.moe_layer's semantics without Python loops over tokens.
    x [T, D] -> (y [T, D], {"aux", "z", "dropped"})."""
    t_count = x.shape[0]
    e_count, k = cfg.num_experts, cfg.top_k
    logits = x @ p[prefix + "gate.weight"].T  # [T, E]
    probs = torch.softmax(logits, dim=-1)
    ids = ref.top_k_ids(probs, k)  # [T, k], ties to the lower expert id
    chosen = probs.gather(1, ids)
    gates = chosen / chosen.sum(-1, keepdim=True) if cfg.normalize_top_k else chosen
    capacity = ref.expert_capacity(cfg.capacity_factor, k, t_count, e_count, cfg.min_capacity)
    # Slot = how many choices of the same expert come before this one in
    # rank-major order (all first choices in token order, then all second).
    onehot = F.one_hot(ids.T.reshape(-1), e_count)  # [k*T, E]
    slots = ((onehot.cumsum(0) - 1) * onehot).sum(-1).view(k, t_count).T  # [T, k]
    kept = slots < capacity if capacity is not None else torch.ones_like(ids, dtype=torch.bool)

    y = torch.zeros_like(x)
    for e in range(e_count):
        tok, rank = torch.where((ids == e) & kept)
        q = f"{prefix}experts.{e}."
        out = ref.swiglu(x.index_select(0, tok), p[q + "w1.weight"], p[q + "w3.weight"], p[q + "w2.weight"])
        y.index_add_(0, tok, out * gates[tok, rank].unsqueeze(-1))

    f = torch.bincount(ids.flatten(), minlength=e_count).to(x.dtype) / (t_count * k)
    aux = e_count * (f * probs.mean(0)).sum()
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    return y, dict(aux=aux, z=z, dropped=int((~kept).sum()))


def ref_config(m) -> ref.RefConfig:
    if m["router_jitter_eps"] != 0:
        sys.exit("torch_step_bench: reference_model.py has no router jitter; use moe.router_jitter_eps=0")
    return ref.RefConfig(
        vocab_size=m["vocab_size"], d_model=m["d_model"], num_layers=m["num_layers"],
        num_heads=m["num_heads"], num_kv_heads=m["num_kv_heads"], ffn_dim=m["ffn_dim"],
        expert_ffn_dim=m["expert_ffn_dim"], rope_theta=m["rope_theta"], norm_eps=m["norm_eps"],
        tie_embeddings=m["tie_embeddings"], moe_layers=[bool(v) for v in m["moe_layers"]],
        num_experts=m["num_experts"], top_k=m["top_k"], normalize_top_k=m["normalize_top_k"],
        capacity_factor=m["capacity_factor"], min_capacity=m["min_capacity"],
        aux_loss_coef=m["aux_loss_coef"], z_loss_coef=m["z_loss_coef"])


def make_adamw(params, o):
    """torch.optim.AdamW with Switchboard's groups (optim/adamw.h): no decay
    on norms and the embedding unless the config asks for it."""
    def decays(name):
        if ref.is_norm(name):
            return o["decay_norms"]
        return o["decay_embeddings"] if name == "model.embed_tokens.weight" else True
    groups = [dict(params=[t for n, t in params.items() if decays(n)], weight_decay=o["weight_decay"]),
              dict(params=[t for n, t in params.items() if not decays(n)], weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])


def loaded_blas():
    """Paths of the BLAS libraries mapped into this process."""
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "blas" in line.split()[-1]})


def validate(sb, params, inputs, targets, cfg, moe):
    """Checks losses, drops and gradients of the batch against Switchboard's.
    Returns the measured errors; exits non-zero when one is out of bounds."""
    out = ref.forward(params, inputs, targets, cfg, moe=moe)
    out["total"].backward()
    theirs = sb["loss"]
    ours = dict(total=out["total"].item(), ce=out["ce"].item(), aux=out["aux"].item(), z=out["z"].item())
    moe_count = sum(cfg.moe_layers)
    dropped = sum(r["dropped"] for r in out["routers"].values())
    dropped_fraction = dropped / (inputs.numel() * cfg.top_k * moe_count) if moe_count else 0.0
    # float32 tolerances. Both sides round differently (summation order of
    # d_model-long dots, the vocab-long softmax and the T-long means); on the
    # tiny config that moves the total loss by 5.7e-7 (0.5 ulp of 9.1) and
    # gradients by 1.5e-6 of each tensor's largest entry. The bounds below are
    # ~100x and ~40x that. Routing is discrete and the loss alone barely sees
    # it: sending one token's second choice to another expert (tried on the
    # tiny config) moved the total loss by 1.2e-5, inside its bound, but an
    # expert's gradient by 0.16 of its largest entry, 2,500x the gradient
    # bound. A changed drop count fails the dropped-fraction check outright.
    eps32 = torch.finfo(torch.float32).eps
    failures = []
    errors = {}
    for name, value in ours.items():
        err = abs(value - theirs[name])
        errors[f"loss.{name}"] = err
        if err > 64 * eps32 * max(1.0, abs(theirs[name])):
            failures.append(f"{name} loss: pytorch {value:.9g}, switchboard {theirs[name]:.9g}, |diff| {err:.3g}")
    if abs(dropped_fraction - theirs["dropped_fraction"]) > 1e-9:
        failures.append(f"dropped fraction: pytorch {dropped_fraction:.9g}, switchboard "
                        f"{theirs['dropped_fraction']:.9g} (routing differs)")
    # Gradients: max |diff| over a tensor relative to its largest |grad|.
    grads = load_file(sb["batch_file"])
    worst = (0.0, "")
    for name, t in params.items():
        g_ref, g = grads["grad." + name].double(), t.grad.double()
        rel = ((g - g_ref).abs().max() / g_ref.abs().max().clamp_min(1e-30)).item()
        worst = max(worst, (rel, name))
    errors["grad.max_rel"] = worst[0]
    errors["grad.worst_tensor"] = worst[1]
    if worst[0] > 256 * eps32 * math.sqrt(cfg.num_layers):
        failures.append(f"gradient {worst[1]}: max |diff| / max |grad| = {worst[0]:.3g}")
    if failures:
        sys.exit("torch_step_bench: PyTorch and Switchboard disagree on the validation batch:\n  "
                 + "\n  ".join(failures))
    print(f"validated: total loss {ours['total']:.6f} (|diff| {errors['loss.total']:.2g}), "
          f"dropped {dropped_fraction:.4f}, gradients within {worst[0]:.2g} relative ({worst[1]})")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switchboard_json", required=True, help="model_step_bench's report")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--moe", choices=["vectorized", "reference"], default="vectorized")
    ap.add_argument("--json", help="report path (default: next to --switchboard_json)")
    args = ap.parse_args()
    with open(args.switchboard_json) as f:
        sb = json.load(f)
    torch.set_num_threads(args.threads)
    cfg = ref_config(sb["model"])
    moe = moe_layer_vectorized if args.moe == "vectorized" else ref.moe_layer

    params = {n: t.float().requires_grad_() for n, t in load_file(sb["weights"]).items()}
    tokens = load_file(sb["batch_file"])["tokens"].long()  # [B, S+1]
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    errors = validate(sb, params, inputs, targets, cfg, moe)

    adamw = make_adamw(params, sb["optimizer"])
    fwd, bwd, opt, step = [], [], [], []
    for i in range(sb["warmup"] + sb["iters"]):
        for t in params.values():
            t.grad = None
        t0 = time.perf_counter()
        loss = ref.forward(params, inputs, targets, cfg, moe=moe)["total"]
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
    report = dict(
        impl="pytorch", moe=args.moe, torch_version=torch.__version__, threads=torch.get_num_threads(),
        blas=loaded_blas(), validation=errors, warmup=sb["warmup"], iters=sb["iters"],
        fwd_ms=[round(v, 3) for v in fwd], bwd_ms=[round(v, 3) for v in bwd],
        adamw_ms=[round(v, 3) for v in opt], step_ms=round(step_ms, 3),
        tokens_per_s=round(tokens_per_step / step_ms * 1e3, 1), flops_per_token=sb["flops_per_token"],
        gflops=round(sb["flops_per_token"] * tokens_per_step / step_ms / 1e6, 2))
    path = args.json or os.path.join(os.path.dirname(args.switchboard_json), f"pytorch_{args.moe}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"pytorch {torch.__version__} ({args.moe} MoE) | {report['threads']} threads | fwd "
          f"{statistics.median(fwd):.1f} bwd {statistics.median(bwd):.1f} adamw {statistics.median(opt):.1f} ms"
          f" | {report['tokens_per_s']:.0f} tokens/s | {report['gflops']:.1f} GFLOP/s (fwd+bwd, median of "
          f"{sb['iters']})")


if __name__ == "__main__":
    main()

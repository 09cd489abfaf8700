#!/usr/bin/env python3
"""Writes the golden files of the Hugging Face parity tests (issue 3).

For each case: <case>.textproto (our TrainConfig), <case>_weights.safetensors
(initial weights, HF names, float64) and <case>_golden.safetensors (tokens,
logits, losses, router statistics, every gradient, and the losses of a few
AdamW steps), all float64. README.md beside this file lists every tensor.

    bash tests/reference/setup_env.sh                       # once
    /opt/sb-reference-venv/bin/python tests/reference/make_golden.py          # rewrite tests/golden/
    /opt/sb-reference-venv/bin/python tests/reference/make_golden.py --check  # regenerate and compare

Cases (a) and (b) are computed by transformers (LlamaForCausalLM,
MixtralForCausalLM) and reference_model.py must match them to 1e-10 in
float64 before anything is written; (c) and (d) have no HF decoder and are
computed by reference_model.py, which (a) and (b) just checked and whose
capacity routing is checked against transformers' Switch and NLLB-MoE routers;
(e) to (h) are the routing variants, computed by reference_model.py too. The
cases themselves and their TrainConfig text: golden_cases.py.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List

import safetensors
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models as hf  # noqa: E402
import reference_model as ref  # noqa: E402
from golden_cases import (CASES, FORMAT_VERSION, REPO, Case, check_textproto,  # noqa: E402
                          textproto)

SELF_CHECK_TOL = 1e-10    # transformers (exact float64) vs reference_model.py, absolute
COUNT_F32_TOL = 1e-6      # HF Switch's load-balancing loss takes its counts in float32
UNPATCHED_TOL = 1e-5      # transformers as shipped (float32 roundings) vs exact float64
MIN_TOPK_MARGIN = 1e-4    # smallest p_k - p_(k+1) met: routing must not flip in float32


# ----------------------------------------------------------------------------- runs


def moe_indices(cfg: ref.RefConfig) -> List[int]:
    return [i for i, m in enumerate(cfg.moe_layers) if m]


def reference_engine(case: Case, params: Dict[str, torch.Tensor]):
    """-> (named leaf parameters, loss_fn, buffers) for reference_model.py.
    Buffers (the selection biases) are read by the model but not trained."""
    buffer_names = set(ref.buffer_shapes(case.cfg))
    leaves = {n: t.clone().requires_grad_(n not in buffer_names) for n, t in params.items()}
    buffers = {n: t for n, t in leaves.items() if n in buffer_names}
    named = {n: t for n, t in leaves.items() if n not in buffer_names}

    def loss_fn(inputs, targets, step=0):
        out = ref.forward(leaves, inputs, targets, case.cfg, ctx=ref.Ctx(True, step, 0))
        rs = [out["routers"][i] for i in moe_indices(case.cfg)]
        out.update(router_logits=[r["router_logits"] for r in rs],
                   aux_layers=[r["aux"] for r in rs], z_layers=[r["z"] for r in rs])
        return out
    return named, loss_fn, buffers


def transformers_engine(case: Case, params: Dict[str, torch.Tensor]):
    """-> (named parameters, loss_fn, model) for transformers in exact float64."""
    model = hf.build_hf_model(case.cfg, params, case.max_seq_len)

    def loss_fn(inputs, targets, step=0):  # noqa: ARG001 (no random draws)
        with hf.exact_float64():
            return hf.hf_total_loss(model, case.cfg, inputs, targets)
    return dict(model.named_parameters()), loss_fn, model


def grads_of(named: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
            for n, p in named.items()}


def topk_margin(router_logits: List[torch.Tensor], k: int) -> float:
    """Smallest gap p_k - p_(k+1) over tokens and layers (inf without MoE)."""
    m = float("inf")
    for rl in router_logits:
        p = torch.softmax(rl.detach(), dim=-1).sort(dim=-1, descending=True).values
        m = min(m, float((p[:, k - 1] - p[:, k]).min()))
    return m


def decision_margin(case: Case, out) -> float:
    """How far the routing decisions of one forward are from flipping: the
    top-k gap, or for the variants the smallest of their own margins (biased
    top-k gap, per-expert top-C gap, |u - 2 g2|, priority gaps)."""
    if case.has_variants:
        return min((r["margin"] for r in out["routers"].values()), default=float("inf"))
    return topk_margin(out["router_logits"], case.cfg.top_k)


def train_steps(case: Case, named: Dict[str, torch.Tensor], loss_fn: Callable,
                step_tokens: torch.Tensor, buffers: Dict[str, torch.Tensor] = None):
    """K steps of torch.optim.AdamW (constant lr, no decay on RMSNorm scales and
    the embedding, clip_grad_norm_ on the total loss) on step_tokens[i], then
    the auxiliary-loss-free bias update from step i's routed counts.
    -> total loss, CE, pre-clip grad norm per step (before that step's update),
    smallest decision margin met."""
    o = case.optim
    no_decay = lambda n: ref.is_norm(n) or n == "model.embed_tokens.weight"  # noqa: E731
    groups = [{"params": [p for n, p in named.items() if not no_decay(n)],
               "weight_decay": o.weight_decay},
              {"params": [p for n, p in named.items() if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    losses, ces, norms, margin = [], [], [], float("inf")
    for step, batch in enumerate(step_tokens):
        opt.zero_grad(set_to_none=False)
        out = loss_fn(batch[:, :-1], batch[:, 1:], step)
        out["total"].backward()
        for p in named.values():  # an unused parameter still gets decayed
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        norm = torch.nn.utils.clip_grad_norm_(list(named.values()), o.grad_clip)
        opt.step()
        if buffers:
            ref.update_selection_biases(buffers, out["routers"], case.cfg)
        losses.append(float(out["total"]))
        ces.append(float(out["ce"]))
        norms.append(float(norm))
        margin = min(margin, decision_margin(case, out))
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return f64(losses), f64(ces), f64(norms), margin


def max_abs(a, b) -> float:
    return float((a.detach() - b.detach()).abs().max())


def self_check(case: Case, hf_out, hf_grads, ref_out, ref_grads) -> Dict[str, float]:
    """transformers vs reference_model.py on the same weights and tokens."""
    err = {
        "logits": max_abs(hf_out["logits"], ref_out["logits"]),
        "ce": max_abs(hf_out["ce"], ref_out["ce"]),
        "total_loss": max_abs(hf_out["total"], ref_out["total"]),
        "grads": max(max_abs(hf_grads[n], ref_grads[n]) for n in ref_grads),
    }
    assert set(hf_grads) == set(ref_grads), set(hf_grads) ^ set(ref_grads)
    if hf_out["router_logits"]:
        err["router_logits"] = max(max_abs(a, b) for a, b in
                                   zip(hf_out["router_logits"], ref_out["router_logits"]))
        # HF's load_balancing_loss_func on one layer, / k, against our own
        # E * sum_e f_e P_e (f over the T*k choices, P the mean prob).
        err["hf_load_balancing_over_k_vs_ours"] = max(
            max_abs(a, b) for a, b in zip(hf_out["aux_layers"], ref_out["aux_layers"]))
        err["z"] = max(max_abs(a, b) for a, b in zip(hf_out["z_layers"], ref_out["z_layers"]))
    for what, e in err.items():
        assert e <= SELF_CHECK_TOL, f"{case.name}: {what} differs from transformers by {e:.3g}"
    return err


def routing_check(case: Case, params, ref_out) -> Dict[str, float]:
    """Capacity routing of reference_model.py (cases c, d) against transformers'
    own capacity routers (Switch top-1, NLLB-MoE top-2) on the same router
    inputs and capacity: which choices are kept must agree exactly."""
    err: Dict[str, float] = {}
    c = case.cfg
    k, e_count = c.top_k, c.num_experts
    if (c.routing != "token_choice" or c.second_expert_policy != "all" or c.aux_free_rate > 0
            or r_capacity_none(ref_out, c) or ((c.batch_prioritized or c.noisy_gating) and k != 2)):
        return err  # no transformers router routes this way
    for i in moe_indices(case.cfg):
        r = ref_out["routers"][i]
        w = params[f"model.layers.{i}.block_sparse_moe.gate.weight"]
        h = hf.hf_capacity_router(r["x"], w, k, r["capacity"], batch_prioritized=c.batch_prioritized,
                                  router_logits=r["router_logits"] if c.noisy_gating else None)
        ids, kept = r["ids"], r["slots"] >= 0
        if k == 1:
            ours = F.one_hot(ids[:, 0], e_count) * kept[:, :1]
            assert torch.equal(h["kept_onehot"].long(), ours.long()), f"{case.name} layer {i}"
            found = {"hf_switch_router_logits": max_abs(h["router_logits"], r["router_logits"]),
                     "hf_switch_gates": max_abs(h["gates"], r["gates"][:, 0]),
                     "hf_switch_z_loss": max_abs(h["z"], r["z"])}
            aux_err = max_abs(h["aux"], r["aux"])
            assert aux_err <= COUNT_F32_TOL, f"{case.name} layer {i}: Switch aux {aux_err:.3g}"
            err["hf_switch_load_balancing_f32_counts"] = max(
                aux_err, err.get("hf_switch_load_balancing_f32_counts", 0.0))
        else:
            chosen = r["probs"].detach().gather(1, ids)
            renorm = chosen / chosen.sum(-1, keepdim=True)
            ours = torch.zeros(ids.shape[0], e_count, dtype=renorm.dtype).scatter_add(
                1, ids, renorm * kept)
            theirs = h["renormalised_kept_gates"]
            assert torch.equal(theirs != 0, ours != 0), f"{case.name} layer {i}: kept choices"
            found = {"hf_nllb_top2_kept_renormalised_gates": max_abs(theirs, ours)}
        for what, e in found.items():
            assert e <= SELF_CHECK_TOL, f"{case.name} layer {i}: {what} differs by {e:.3g}"
            err[what] = max(e, err.get(what, 0.0))
    return err


def r_capacity_none(ref_out, cfg: ref.RefConfig) -> bool:
    """Dropless: nothing for a capacity router to check."""
    return any(ref_out["routers"][i]["capacity"] is None for i in moe_indices(cfg))


def unpatched_check(case: Case, model, tokens: torch.Tensor, golden_logits, golden_ce):
    """transformers as shipped (its float32 roundings, its own label shift and
    CE) against the exact goldens: only float32-sized differences allowed."""
    kw = dict(output_router_logits=False) if case.cfg.moe_layers[0] else {}
    with torch.no_grad(), hf.default_dtype(torch.float64):
        out = model(input_ids=tokens, labels=tokens, use_cache=False, return_dict=True, **kw)
    s = case.seq_len
    logits = out.logits[:, :s].reshape(-1, case.cfg.vocab_size).double()
    err = {"unpatched_logits": max_abs(logits, golden_logits),
           "unpatched_ce_with_hf_label_shift": abs(float(out.loss) - float(golden_ce))}
    for what, e in err.items():
        assert e <= UNPATCHED_TOL, f"{case.name}: {what} = {e:.3g}"
    return err


def float32_replay(case: Case, params, step_tokens, golden, grads) -> Dict[str, float]:
    """reference_model.py in float32 from the float64 weights rounded to float32
    (what a float32 C++ run of the same files does), against the goldens: the
    errors a float32 implementation should expect, for deriving tolerances."""
    named, loss_fn, buffers = reference_engine(case, {n: t.float() for n, t in params.items()})
    tokens = step_tokens[0]
    out = loss_fn(tokens[:, :-1], tokens[:, 1:])
    out["total"].backward()
    g32 = grads_of(named)
    for i in moe_indices(case.cfg):
        assert torch.equal(out["routers"][i]["slots"], golden[f"slots.layer_{i}"].long()) and \
            torch.equal(out["routers"][i]["ids"], golden[f"topk_ids.layer_{i}"].long()), \
            f"{case.name} layer {i}: float32 routes differently"
    for p in named.values():
        p.grad = None
    steps = train_steps(case, named, loss_fn, step_tokens, buffers)
    return {
        "logits_max_abs_err": max_abs(out["logits"].double(), golden["logits"]),
        "logits_max_abs": float(golden["logits"].abs().max()),
        "total_loss_abs_err": abs(float(out["total"]) - float(golden["total_loss"])),
        "grads_max_abs_err": max(max_abs(g32[n].double(), grads[n]) for n in grads),
        "grads_max_abs": max(float(g.abs().max()) for g in grads.values()),
        "step_losses_max_abs_err": max_abs(steps[0], golden["step_losses"]),
    }


def scalar(v) -> torch.Tensor:
    return torch.tensor([float(v)], dtype=torch.float64)


def run_case(case: Case):
    """-> (weights dict, golden dict, metadata dict)."""
    cfg = case.cfg
    params = ref.init_parameters(cfg, case.seed, case.init_std)
    if ref.buffer_shapes(cfg):
        # A nonzero starting bias, so that the biased choice shows from step 0.
        bgen = torch.Generator().manual_seed(case.seed + 2)
        for n, shape in ref.buffer_shapes(cfg).items():
            params[n] = case.bias_std * torch.randn(shape, generator=bgen, dtype=torch.float64)
    gen = torch.Generator().manual_seed(case.seed + 1)
    step_tokens = torch.randint(0, cfg.vocab_size, (case.steps, case.batch, case.seq_len + 1),
                                generator=gen)
    tokens = step_tokens[0]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    ref_named, ref_loss, ref_buffers = reference_engine(case, params)
    ref_out = ref_loss(inputs, targets)
    ref_out["total"].backward()
    ref_grads = grads_of(ref_named)

    checks: Dict[str, float] = {}
    if case.reference == "transformers":
        assert not case.has_variants, "transformers has no routing variants"
        named, loss_fn, model = transformers_engine(case, params)
        out = loss_fn(inputs, targets)
        out["total"].backward()
        grads = grads_of(named)
        checks.update(self_check(case, out, grads, ref_out, ref_grads))
        checks.update(unpatched_check(case, model, tokens, out["logits"], out["ce"]))
        model.zero_grad(set_to_none=True)
        steps = train_steps(case, named, loss_fn, step_tokens)
        ref_steps = train_steps(case, ref_named, ref_loss, step_tokens)
        checks["step_losses"] = max_abs(steps[0], ref_steps[0])
        assert checks["step_losses"] <= SELF_CHECK_TOL, checks
    else:
        out, grads = ref_out, ref_grads
        checks.update(routing_check(case, params, ref_out))
        for p in ref_named.values():
            p.grad = None
        steps = train_steps(case, ref_named, ref_loss, step_tokens, ref_buffers)
    step_losses, step_ce, step_norms, step_margin = steps

    golden = {
        "tokens": tokens.to(torch.int32),
        "step_tokens": step_tokens.to(torch.int32),
        "logits": out["logits"].detach(),
        "loss": scalar(out["ce"]),
        "aux_loss": scalar(out["aux"]),
        "z_loss": scalar(out["z"]),
        "total_loss": scalar(out["total"]),
        "step_losses": step_losses,
        "step_ce_losses": step_ce,
        "step_grad_norms": step_norms,
    }
    capacity = -1
    dropped = {}
    for j, i in enumerate(moe_indices(cfg)):
        rec = ref_out["routers"][i]  # routing details: reference_model.py (same router logits)
        capacity = -1 if rec["capacity"] is None else rec["capacity"]
        dropped[f"layer_{i}"] = rec["dropped"]
        golden.update({
            f"router_logits.layer_{i}": out["router_logits"][j].detach(),
            f"aux.layer_{i}": scalar(out["aux_layers"][j]),
            f"z.layer_{i}": scalar(out["z_layers"][j]),
            f"entropy.layer_{i}": scalar(rec["entropy"]),
            f"topk_ids.layer_{i}": rec["ids"].to(torch.int32),
            f"gates.layer_{i}": rec["gates"].detach(),
            f"slots.layer_{i}": rec["slots"].to(torch.int32),
            f"routed.layer_{i}": rec["routed"].to(torch.int32),
            f"kept.layer_{i}": rec["kept"].to(torch.int32),
        })
        if "hf_lbl" in out:
            golden[f"hf_load_balancing_loss.layer_{i}"] = scalar(out["hf_lbl"][j])
    if any(cfg.moe_layers):
        golden["capacity"] = torch.tensor([capacity], dtype=torch.int32)
    for n, b in ref_buffers.items():  # after the K steps' bias updates
        golden["final." + n] = b.detach().clone()
    for n, g in grads.items():
        golden["grad." + n] = g

    replay = float32_replay(case, params, step_tokens, golden, grads)
    margin = min(decision_margin(case, out), step_margin)
    assert margin >= MIN_TOPK_MARGIN, f"{case.name}: top-k margin {margin:.3g}: change the seed"
    if case.expect_drops:
        assert sum(dropped.values()) > 0, f"{case.name}: no token dropped: change the seed"
    grad_clipped = int((step_norms > case.optim.grad_clip).sum())
    assert 0 < grad_clipped < case.steps, \
        f"{case.name}: {grad_clipped} of {case.steps} steps clipped: set grad_clip between norms"

    meta = {
        "format_version": FORMAT_VERSION,
        "case": case.name,
        "description": case.description,
        "reference": case.reference,
        "config": f"{case.name}.textproto",
        "weights": f"{case.name}_weights.safetensors",
        "dtype": "float64",
        "layout": "tokens [B, S+1]: inputs = tokens[:, :-1], targets = tokens[:, 1:]; "
                  "row t of logits / router_logits / topk_ids is token b*S + s",
        "capacity": str(capacity),
        "dropped_choices": json.dumps(dropped),
        "min_topk_margin": f"{margin:.3e}",
        "steps_clipped": f"{grad_clipped} of {case.steps}",
        "crosscheck_max_abs_err": json.dumps({k: float(f"{v:.3e}") for k, v in checks.items()}),
        "float32_replay": json.dumps({k: float(f"{v:.3e}") for k, v in replay.items()}),
        **versions(),
    }
    return params, golden, meta


def versions() -> Dict[str, str]:
    v = {"torch_version": torch.__version__, "transformers_version": transformers.__version__,
         "safetensors_version": safetensors.__version__,
         "python_version": sys.version.split()[0],
         "generator": "tests/reference/make_golden.py"}
    try:
        v["torch_debian_package"] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "python3-torch"], capture_output=True,
            text=True).stdout.strip()
    except OSError:
        pass
    return v


# ----------------------------------------------------------------------------- files


def write_all(out_dir: str) -> Dict[str, Dict[str, float]]:
    os.makedirs(out_dir, exist_ok=True)
    report = {}
    for case in CASES:
        params, golden, meta = run_case(case)
        proto = os.path.join(out_dir, f"{case.name}.textproto")
        with open(proto, "w") as f:
            f.write(textproto(case))
        parsed = check_textproto(proto)
        wmeta = {k: meta[k] for k in ("format_version", "case", "config", "dtype")}
        wmeta["names"] = "Hugging Face (Llama / Mixtral); no lm_head.weight when tied"
        save_file({n: t.contiguous() for n, t in params.items()},
                  os.path.join(out_dir, f"{case.name}_weights.safetensors"), metadata=wmeta)
        save_file({n: t.contiguous() for n, t in golden.items()},
                  os.path.join(out_dir, f"{case.name}_golden.safetensors"), metadata=meta)
        report[case.name] = meta
        print(f"[{case.name}] {parsed}; loss {float(golden['loss']):.6f} total "
              f"{float(golden['total_loss']):.6f}; steps {golden['step_losses'].tolist()}; "
              f"grad norms {[round(x, 4) for x in golden['step_grad_norms'].tolist()]}; "
              f"dropped {meta['dropped_choices']}; margin {meta['min_topk_margin']}; "
              f"cross-checks {meta['crosscheck_max_abs_err']}; float32 {meta['float32_replay']}")
    return report


def compare_dirs(fresh: str, committed: str) -> None:
    """Regenerated files must equal the committed ones: integers exactly, floats
    bit for bit on the machine that wrote them and within 1e-12 (relative to
    the tensor's scale) where another CPU's BLAS or libm rounds differently."""
    problems, inexact = [], 0
    for name in sorted(os.listdir(fresh)):
        a, b = os.path.join(fresh, name), os.path.join(committed, name)
        if not os.path.exists(b):
            problems.append(f"{name}: missing in {committed}")
        elif name.endswith(".textproto"):
            if open(a).read() != open(b).read():
                problems.append(f"{name}: text differs")
        else:
            ta, tb = load_file(a), load_file(b)
            if ta.keys() != tb.keys():
                problems.append(f"{name}: tensor names differ: {set(ta) ^ set(tb)}")
                continue
            for k in ta:
                x, y = ta[k], tb[k]
                if x.dtype != y.dtype or x.shape != y.shape:
                    problems.append(f"{name}:{k}: {x.dtype}{list(x.shape)} vs "
                                    f"{y.dtype}{list(y.shape)}")
                elif not torch.equal(x, y):
                    d = float((x.double() - y.double()).abs().max())
                    scale = max(1.0, float(y.double().abs().max()))
                    if x.is_floating_point() and d <= 1e-12 * scale:
                        inexact += 1
                    else:
                        problems.append(f"{name}:{k}: max abs diff {d:.3g}")
    if problems:
        sys.exit("golden files differ from a fresh run:\n  " + "\n  ".join(problems))
    how = "identically" if inexact == 0 else f"({inexact} tensors within 1e-12, not bitwise)"
    print(f"[check] {len(os.listdir(fresh))} files regenerated {how}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden"),
                    help="directory for the golden files (default: tests/golden)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and compare with --out")
    args = ap.parse_args()
    torch.set_num_threads(1)  # fixed summation order: regeneration is bit for bit
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            write_all(tmp)
            compare_dirs(tmp, args.out)
    else:
        write_all(args.out)


if __name__ == "__main__":
    main()

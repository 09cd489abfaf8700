#!/usr/bin/env python3
"""Training-step throughput of Switchboard against Hugging Face
MixtralForCausalLM under the newest PyTorch (eager and torch.compile) on the
same model, weights and token batch, validated, in alternating rounds; the
baseline rows of docs/benchmarks.md (benchmarks/scaling.py calls compare()).

  python3 benchmarks/step_compare.py [--config configs/tiny.textproto] [--set a.b=v]...
      [--threads 2] [--rounds 3] [--warmup 3] [--iters 10] [--modes eager,compile] [--json OUT]

Each round runs, one after the other so that a drift in machine speed hits
all alike:
  1. build/benchmarks/model_step_bench: writes the initial weights, the batch
     and every gradient, then times Switchboard's step;
  2. benchmarks/hf_step_bench.py --mode eager, then --mode compile (in
     /opt/sb-latest-venv): each first checks losses and gradients against
     step 1's files and exits non-zero if they disagree, then times.
HF routes dropless with renormalised top-2 gates, so the Switchboard side
runs moe.capacity_factor_train=0, moe.normalize_top_k=true, no jitter
(HF_COMPATIBLE below, appended to --set). A "training step" is forward with
the loss, backward and the AdamW update; ratios are taken within each round
(HF time / Switchboard time) and the median over rounds is reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATEST_VENV = os.environ.get("SB_LATEST_VENV", "/opt/sb-latest-venv")
HF_COMPATIBLE = ["moe.capacity_factor_train=0", "moe.normalize_top_k=true", "moe.router_jitter_eps=0"]
# OpenBLAS settings that an environment may export and that override the
# library's own choice for the CPU. They are removed for the benchmarks
# (SB_KEEP_BLAS_ENV=1 keeps them) so that OpenBLAS runs as on a fresh
# machine: on the machine of docs/benchmarks.md, an inherited
# OPENBLAS_CORETYPE=Haswell replaced the AVX-512 kernels OpenBLAS detects
# (Cooperlake) with AVX2 ones at half the GEMM rate.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def bench_env(threads, extra=None):
    """The environment of a benchmark process: `threads` OpenMP / BLAS
    threads, OpenMPI as root with oversubscription, no inherited BLAS
    kernel overrides (see BLAS_OVERRIDES), then `extra`."""
    env = dict(os.environ)
    if os.environ.get("SB_KEEP_BLAS_ENV") != "1":
        for k in BLAS_OVERRIDES:
            env.pop(k, None)
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_pml="ob1",
               OMPI_MCA_hwloc_base_binding_policy="none")
    env.update(extra or {})
    return env


def dropped_blas_env():
    """The inherited BLAS overrides that bench_env removes (for the report)."""
    if os.environ.get("SB_KEEP_BLAS_ENV") == "1":
        return {}
    return {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}


def run_logged(cmd, env=None, log=None):
    """Runs cmd in the repository, appending it and its output to `log`;
    returns stdout, raises with the output's tail when it fails."""
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if log:
        log.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n")
        log.flush()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p.stdout


def run(cmd, env_threads, log, extra_env=None):
    """run_logged in bench_env(env_threads, extra_env)."""
    return run_logged(cmd, bench_env(env_threads, extra_env), log)


def load(path):
    with open(path) as f:
        return json.load(f)


def compare(config, overrides, threads, rounds, warmup, iters, modes, build_dir, log=sys.stdout, work=None,
            variants=None):
    """Runs the rounds; returns {"threads": t, "impls": {name: summary}, ...}.
    variants: {name: environment} of extra Switchboard runs in each round
    (e.g. other BLAS kernels), timed like the main one."""
    variants = variants or {}
    overrides = list(overrides) + HF_COMPATIBLE
    python = os.path.join(LATEST_VENV, "bin", "python")
    if not os.access(python, os.X_OK):
        raise RuntimeError(f"{python} missing: create the venv (benchmarks/requirements-latest.txt)")
    own_work = work is None
    work = work or tempfile.mkdtemp(prefix="sb_step_compare_")
    per_round = {"switchboard": []}
    per_round.update({f"switchboard_{v}": [] for v in variants})
    per_round.update({f"hf_{m}": [] for m in modes})
    for r in range(rounds):
        d = os.path.join(work, f"t{threads}_r{r}")
        cmd = [os.path.join(build_dir, "benchmarks", "model_step_bench"), "--config", config,
               "--warmup", str(warmup), "--iters", str(iters), "--out_dir", d]
        for s in overrides:
            cmd += ["--set", s]
        print(run(cmd, threads, log).strip().splitlines()[-1], flush=True)
        per_round["switchboard"].append(load(os.path.join(d, "switchboard.json")))
        for v, env in variants.items():
            vd = os.path.join(d, v)
            vcmd = [c if c != d else vd for c in cmd]
            print(f"{v}: " + run(vcmd, threads, log, env).strip().splitlines()[-1], flush=True)
            per_round[f"switchboard_{v}"].append(load(os.path.join(vd, "switchboard.json")))
        for m in modes:
            out = run([python, os.path.join(REPO, "benchmarks", "hf_step_bench.py"), "--switchboard_json",
                       os.path.join(d, "switchboard.json"), "--threads", str(threads), "--mode", m], threads, log)
            print(out.strip().splitlines()[-1], flush=True)
            per_round[f"hf_{m}"].append(load(os.path.join(d, f"hf_{m}.json")))
    sb = per_round["switchboard"]
    first = sb[0]
    med = statistics.median
    result = dict(config=config, overrides=overrides, threads=threads, rounds=rounds, warmup=warmup, iters=iters,
                  model=first["model"], batch=first["batch"], seq_len=first["seq_len"], params=first["params"],
                  flops_per_token=first["flops_per_token"], loss=first["loss"], impls={})
    for name, rs in per_round.items():
        summary = dict(
            train_step_ms=med(x["train_step_ms"] for x in rs),
            step_ms=med(x["step_ms"] for x in rs),
            fwd_ms=med(med(x["fwd_ms"]) for x in rs), bwd_ms=med(med(x["bwd_ms"]) for x in rs),
            adamw_ms=med(med(x["adamw_ms"]) for x in rs),
            train_tokens_per_s=med(x["train_tokens_per_s"] for x in rs),
            tokens_per_s=med(x["tokens_per_s"] for x in rs),
            train_step_ms_per_round=[x["train_step_ms"] for x in rs],
            # Within each round: this implementation's time over Switchboard's.
            switchboard_speedup=med(x["train_step_ms"] / s["train_step_ms"] for x, s in zip(rs, sb)),
            switchboard_speedup_fwd_bwd=med(x["step_ms"] / s["step_ms"] for x, s in zip(rs, sb)))
        if name.startswith("switchboard"):
            summary.update(blas_core=rs[0]["blas_core"])
        else:
            summary.update(torch_version=rs[0]["torch_version"], transformers_version=rs[0]["transformers_version"],
                           attn_implementation=rs[0]["attn_implementation"],
                           experts_implementation=rs[0]["experts_implementation"],
                           first_step_s=[x["first_step_s"] for x in rs],
                           max_loss_diff=max(x["validation"]["loss.total"] for x in rs),
                           max_grad_rel_diff=max(x["validation"]["grad.max_rel"] for x in rs))
        result["impls"][name] = summary
    if own_work:
        subprocess.run(["rm", "-rf", work])
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/tiny.textproto")
    ap.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--build_dir", default=os.environ.get("SB_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    subprocess.run(["ninja", "-C", args.build_dir, "--quiet", "model_step_bench"], check=True)
    r = compare(args.config, args.set, args.threads, args.rounds, args.warmup, args.iters,
                [m for m in args.modes.split(",") if m], args.build_dir, log=open(os.devnull, "w"))
    for name, s in r["impls"].items():
        print(f"{name:12s} {s['train_tokens_per_s']:9.0f} tokens/s  train step {s['train_step_ms']:8.1f} ms  "
              f"Switchboard {s['switchboard_speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()

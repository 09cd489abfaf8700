"""docs/benchmarks.md from a benchmarks/scaling.py report: every number on
the page comes from the report of one invocation (write(report, plots, path,
sweep_path)). The prose is fixed; what it says about the numbers is
computed here."""
import os
import statistics

from scaling_plots import CATEGORIES

TARGETS = {"hf_eager": 2.0, "hf_compile": 1.5}  # issue 12: training tokens/s ratios on 2 cores, f32
GEMM_TARGET = 0.85  # of the measured f32 GEMM peak at the d_model 512 shape
IMPL_LABEL = {"switchboard": "**Switchboard**", "hf_eager": "HF Mixtral, eager",
              "hf_compile": "HF Mixtral, torch.compile",
              "switchboard_haswell_kernels": "Switchboard, OpenBLAS AVX2 (Haswell) kernels"}


def fmt(x, digits=0):
    return f"{x:,.{digits}f}"


def peak_of(report, threads):
    p = report["peaks"]
    return p.get(threads) or p.get(str(threads))


def machine(report):
    m, base = report["machine"], report["baselines"]
    hf = next((b["impls"][k] for b in base for k in b["impls"] if k.startswith("hf_")), None)
    rows = [("CPU", f"{m['cpu']} ({m['cores']} vCPUs{', ' + m['hypervisor'] if m['hypervisor'] else ''}), "
                    f"{m['memory_gib']} GiB"),
            ("system", f"{m['os']}, Linux {m['kernel']}, {m['compiler']}, OpenBLAS {m['openblas']} (OpenMP build)"),
            ("Switchboard", f"commit {m['commit']}{' + uncommitted changes' if m['dirty'] else ''}, "
                            f"`{os.path.basename(m['build'])}/` (RelWithDebInfo, portable x86-64)")]
    if hf:
        rows.append(("baseline", f"PyTorch {hf['torch_version']}, transformers {hf['transformers_version']} "
                                 f"(attention `{hf['attn_implementation']}`, experts `{hf['experts_implementation']}`)"))
    rows.append(("when", f"{m['date']}, {report['minutes']} minutes; load average "
                         f"{' '.join(report['load_start'])} at the start, {' '.join(report['load_end'])} at the end"))
    for t in sorted({int(k) for k in report["peaks"]}):
        p = peak_of(report, t)
        tg = report.get("torch_gemm", {}).get(t) or report.get("torch_gemm", {}).get(str(t))
        rows.append((f"measured peak, {t} thread{'s' if t > 1 else ''}",
                     f"{p['peak_gflops']:.1f} GFLOP/s f32 GEMM (OpenBLAS {p.get('blas_core', '?')} kernels, "
                     f"{p['peak_size']}^3, best of {', '.join(str(s['n']) for s in p['square'])}); triad "
                     f"{p['triad_gb_per_s']:.1f} GB/s" +
                     (f"; PyTorch's f32 matmul {tg['peak_gflops']:.1f} GFLOP/s" if tg else "")))
    dropped = report.get("dropped_blas_env")
    if dropped:
        rows.append(("environment", "removed for every benchmark process (inherited, they override OpenBLAS's "
                                    "choice for the CPU): " + ", ".join(f"`{k}={v}`" for k, v in dropped.items())))
    return "| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def baselines(report):
    if not report["baselines"]:
        return "No baseline in this run (`--skip_baselines`).", []
    out, checks = [], []
    for b in report["baselines"]:
        t = b["threads"]
        peak = peak_of(report, t)["peak_gflops"] * 1e9
        out.append(f"**{b['title']}**: {b['batch']} x {b['seq_len']} tokens per step, {b['params'] / 1e6:.2f}M "
                   f"parameters, {b['flops_per_token'] / 1e6:.1f} MFLOP per token (forward + backward), "
                   f"{t} thread{'s' if t > 1 else ''}, median of {b['rounds']} rounds of {b['iters']} steps.\n")
        out.append("| implementation | training tokens/s | train step ms (rounds) | forward / backward / AdamW ms "
                   "| MFU (fwd+bwd) vs measured peak | Switchboard speedup |\n|---|---|---|---|---|---|")
        for name, s in b["impls"].items():
            per = s["train_step_ms_per_round"]
            mfu = b["flops_per_token"] * s["tokens_per_s"] / peak
            speed = "-" if name == "switchboard" else f"**{s['switchboard_speedup']:.2f}x**"
            out.append(f"| {IMPL_LABEL.get(name, name)} | {fmt(s['train_tokens_per_s'])} | {s['train_step_ms']:.1f} "
                       f"({min(per):.0f}-{max(per):.0f}) | {s['fwd_ms']:.1f} / {s['bwd_ms']:.1f} / {s['adamw_ms']:.1f} "
                       f"| {100 * mfu:.1f}% | {speed} |")
            if name in TARGETS and t == max(bb["threads"] for bb in report["baselines"]):
                checks.append((f"training tokens/s >= {TARGETS[name]}x {IMPL_LABEL[name]}, {b['name']}",
                               f"{s['switchboard_speedup']:.2f}x", s["switchboard_speedup"] >= TARGETS[name]))
        val = [f"{IMPL_LABEL[k]}: loss within {s['max_loss_diff']:.1e}, gradients within "
               f"{s['max_grad_rel_diff']:.1e} of the largest entry" for k, s in b["impls"].items() if "max_loss_diff" in s]
        comp = b["impls"].get("hf_compile")
        out.append("\nValidated before timing in every round: " + "; ".join(val) + "." +
                   (f" torch.compile's first step (compilation) took {', '.join(f'{x:.0f}' for x in comp['first_step_s'])}"
                    f" s in the rounds (inductor's cache warms after the first)." if comp else "") + "\n")
        sb = b["impls"]["switchboard"]
        if b["name"] == "d512" or b["model"]["d_model"] == 512:
            mfu = b["flops_per_token"] * sb["tokens_per_s"] / peak
            checks.append((f"forward + backward at >= {int(100 * GEMM_TARGET)}% of the measured f32 GEMM peak, "
                           f"{b['name']}", f"{100 * mfu:.1f}%", mfu >= GEMM_TARGET))
    return "\n".join(out), checks


def table(rows, columns):
    head = "| " + " | ".join(c[0] for c in columns) + " |\n|" + "---|" * len(columns)
    body = "\n".join("| " + " | ".join(c[1](r) for c in columns) + " |" for r in rows)
    return head + "\n" + body


def point_table(rows, extra=()):
    cols = [("point", lambda r: r["point"] + (" (oversubscribed)" if r["oversubscribed"] else "")),
            ("tokens/s", lambda r: fmt(r["tokens_per_s"])),
            ("step ms", lambda r: f"{r['step_ms']:.1f}"),
            ("GFLOP/s", lambda r: f"{r['gflops']:.1f}"),
            ("MFU (measured peak)", lambda r: f"{100 * r['mfu_measured']:.1f}%"),
            ("dropped", lambda r: f"{100 * r['dropped_fraction']:.2f}%"),
            ("peak RSS MiB", lambda r: f"{r['peak_rss_mib']:.0f}")]
    return table(rows, cols + list(extra))


def shares(rows):
    cols = [("point", lambda r: r["point"])]
    for name, keys, _ in CATEGORIES:
        cols.append((name, lambda r, keys=keys: f"{100 * sum(r.get(k, 0) for k in keys) / r['step_ms']:.0f}%"))
    return table(rows, cols)


def write(report, plots, path, sweep_path):
    rows = report["rows"]
    by = {}
    for r in rows:
        by.setdefault(r["sweep"], []).append(r)
    spec = report["sweep"]
    base_text, checks = baselines(report)
    rel = os.path.relpath(sweep_path, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    s = []
    s.append("# Benchmarks\n")
    s.append(f"<!-- Generated by `benchmarks/scaling.py --docs` from {rel} at commit "
             f"{report['machine']['commit']}; edit benchmarks/scaling_docs.py, not this file. -->\n")
    s.append("Training throughput of Switchboard on the CPU across the MoE design space, with Hugging Face's "
             "Mixtral under the newest PyTorch measured in the same invocation so that every headline figure is a "
             "ratio, model FLOPs utilisation (MFU) against a GEMM peak measured on the same machine in the same run, "
             "where the step time goes, and how it scales over MPI ranks. Reproduce everything on this page with one "
             "command (Debian's `/usr/bin/python3` with python3-matplotlib and python3-yaml from "
             "`launch/install_deps.sh`; the HF side needs `/opt/sb-latest-venv`, see "
             "[benchmarks/requirements-latest.txt](../benchmarks/requirements-latest.txt)):\n")
    s.append("```\n/usr/bin/python3 benchmarks/scaling.py --docs      # this page, docs/benchmarks/*.png, "
             f"benchmarks/results/scaling_{spec['name']}.{{json,csv}}\n"
             "/usr/bin/python3 benchmarks/scaling.py --quick     # a few minutes, into runs/bench/\n```\n")
    s.append(f"Raw results: [benchmarks/results/scaling_{spec['name']}.json](../benchmarks/results/scaling_{spec['name']}.json) "
             f"(every point, the machine, the measured peaks) and [.csv](../benchmarks/results/scaling_{spec['name']}.csv) "
             "(one row per point). The CPU profile and what was optimised: [performance.md](performance.md).\n")
    s.append("## Machine and conditions\n")
    s.append(machine(report) + "\n")
    load = max(float(x) for x in report["load_start"] + report["load_end"])
    if load > spec["cores"] + 0.5:
        s.append(f"**The machine was shared while this ran** (load average up to {load:.1f} on {spec['cores']} "
                 "cores): absolute numbers are low and noisy; the ratios are taken between runs that alternate "
                 "within rounds, which spreads the disturbance over both sides, but they are noisy too. "
                 "Regenerate on a quiet machine before quoting.\n")
    s.append("## Switchboard against Hugging Face Mixtral\n")
    s.append("`MixtralForCausalLM` (transformers' default attention and experts implementations) runs the same "
             "model, initial weights and token batch as Switchboard, float32 on the CPU, with the same loss "
             "(cross-entropy + Switch load-balancing loss + z-loss, computed from HF's router logits) and AdamW "
             "(`fused=True`, PyTorch's fastest CPU AdamW); HF routes dropless with renormalised top-2, so both "
             "sides do. A training step is forward, backward and the AdamW update; the ratio is HF's step time over "
             "Switchboard's within each round (median over rounds). Before timing, each HF run checks its losses "
             "and every gradient against Switchboard's (`benchmarks/hf_step_bench.py`). MFU counts Megatron's "
             "FLOPs (6 x active parameters + attention, forward + backward) against the measured f32 GEMM peak "
             "with the same threads.\n")
    s.append(base_text + "\n")
    if checks:
        s.append("### The issue's targets (2 cores, float32)\n")
        s.append(table(checks, [("target", lambda c: c[0]), ("measured", lambda c: c[1]),
                                ("met", lambda c: "yes" if c[2] else "**no**")]) + "\n")
    if "experts" in by:
        s.append("## Throughput vs experts\n")
        s.append("![experts](benchmarks/experts.png)\n")
        extra = []
        if any("speedup_vs_hf_eager" in r for r in by["experts"]):
            extra = [("HF eager tokens/s", lambda r: fmt(r.get("hf_eager_tokens_per_s", 0))),
                     ("speedup vs HF eager", lambda r: f"{r['speedup_vs_hf_eager']:.2f}x" if "speedup_vs_hf_eager" in r else "-")]
        s.append(point_table(by["experts"], extra) + "\n")
        s.append("Switchboard tokens/s here come from `step_breakdown_bench` (the trainer's step, data included); "
                 "the HF ratio pairs `model_step_bench` with HF eager on the same point, one round each.\n")
    if "capacity" in by:
        s.append("## Capacity factor\n")
        s.append("![capacity](benchmarks/capacity.png)\n")
        s.append(point_table(by["capacity"]) + "\n")
    if "tokens" in by or "d_model" in by:
        s.append("## Tokens per batch and model width\n")
        s.append("![size](benchmarks/size.png)\n")
        for k in ("tokens", "d_model"):
            if k in by:
                s.append(point_table(by[k]) + "\n")
    scaling = [r for k in ("strong_scaling", "weak_scaling") for r in by.get(k, [])]
    if scaling:
        s.append("## Ranks: data and expert parallelism over MPI\n")
        s.append("![ranks](benchmarks/ranks.png)\n")
        s.append(f"Each point runs `mpirun -np R` with {spec['cores']} // R OpenMP threads per rank (at least 1; "
                 "more ranks than cores are marked oversubscribed). A multi-rank point first checks that its step-0 "
                 "loss equals one process accumulating the same micro-batches.\n")
        s.append(point_table(scaling, [("sweep", lambda r: r["sweep"].replace("_", " ")),
                                       ("dispatch + combine", lambda r: f"{100 * (r['dispatch_ms'] + r['combine_ms']) / r['step_ms']:.0f}%"),
                                       ("grad sync", lambda r: f"{100 * r['grad_sync_ms'] / r['step_ms']:.0f}%")]) + "\n")
        s.append("On one machine with a fixed number of cores more ranks cannot add compute: these plots measure "
                 "what the parallel machinery costs (all-to-all, gradient all-reduce, waiting for the slowest rank), "
                 "not a speedup. Multi-node projections: [parallel.md](parallel.md).\n")
    s.append("## Where the time goes\n")
    s.append("![breakdown](benchmarks/breakdown.png)\n")
    s.append("Shares of the step (mean over ranks) by phase, from the model's phase timers "
             "(`moe/core/phase_timer.h`) and the trainer's step times: `dispatch` / `combine` are the moves into and "
             "out of the experts (a copy on one rank, all-to-all on several, both passes); `permute + unpermute` "
             "gather tokens into expert order and scatter the gate-weighted outputs back; `other` is data loading, "
             "residual adds and gradient zeroing.\n")
    s.append(shares(rows) + "\n")
    if "roofline.png" in plots:
        s.append("## Expert GEMMs: a roofline view\n")
        s.append("![roofline](benchmarks/roofline.png)\n")
        p = peak_of(report, spec["cores"])
        small = [e for e in p["expert"] if e["rows"] <= 64]
        big = [e for e in p["expert"] if e["rows"] >= 1024]
        if small and big:
            s.append(f"The five products of an expert's SwiGLU (forward and backward) measured alone: with "
                     f"{small[0]['rows']} rows per expert they run at {statistics.median(e['gflops'] for e in small):.0f} "
                     f"GFLOP/s (median over shapes), with {big[0]['rows']}+ rows at "
                     f"{statistics.median(e['gflops'] for e in big):.0f}, against a {p['peak_gflops']:.0f} GFLOP/s "
                     "square-GEMM peak. Crosses are the whole experts phase of the sweep points (GEMMs plus the SwiGLU "
                     "activation, 18 x d_model x width FLOPs per kept choice), placed at the intensity of their "
                     "rows-per-expert forward GEMM.\n")
    s.append("## Method\n")
    s.append(f"- Every point: `{spec['warmup']}` untimed then `{spec['steps']}` timed steps of the config "
             f"`{spec['config']}` with the point's overrides on `{spec['data']}`; tokens/s and the phases are means "
             "over the timed steps (rank 0's view for tokens/s, the mean over ranks for phases).\n"
             "- FLOPs: `TrainFlopsPerToken` (launch/model_factory.h), Megatron's 6 x active parameters (top-k "
             "experts, router, attention projections, LM head) + 12 x layers x d_model x seq_len, forward + "
             "backward; the optimizer is not counted. MFU = those FLOP/s over the best f32 GEMM rate that "
             "`gemm_peak_bench` measured with the same number of threads in this run. A datasheet peak exists for "
             "GPUs (scaling.py's table) but not for a virtual CPU, whose core sharing and clock are not published.\n"
             "- Peak memory: the resident set high-water mark of each rank (getrusage), model, activations, "
             "optimizer state, MPI buffers and the memory-mapped data pages it touched.\n"
             "- Dropped: the share of token-expert choices over capacity (0 when dropless).\n")
    s.append("## The sweep file\n")
    with open(sweep_path) as f:
        s.append(f"`{rel}`:\n\n```yaml\n{f.read().rstrip()}\n```\n")
    text = "\n".join(s)
    with open(path, "w") as f:
        f.write(text)
    return path

#!/usr/bin/python3
"""The scaling benchmark driver: one YAML file describes a sweep over the MoE
design space (experts, top-k, capacity factor, tokens per batch, d_model,
expert-parallel size and rank count); this runs every point, with the
Hugging Face baseline in the same invocation, and writes CSV + JSON + PNG
plots and, with --docs, docs/benchmarks.md.

  /usr/bin/python3 benchmarks/scaling.py --docs            # the default sweep -> docs/benchmarks.md (~30 min)
  /usr/bin/python3 benchmarks/scaling.py --quick           # a few minutes, results in runs/bench/
  /usr/bin/python3 benchmarks/scaling.py --sweep FILE.yaml [--out DIR] [--skip_baselines]
  /usr/bin/python3 benchmarks/scaling.py --docs_from runs/bench/default-<time>   # docs of a finished sweep

(Debian's /usr/bin/python3: python3-matplotlib and python3-yaml, installed
by launch/install_deps.sh. The HF baseline runs in /opt/sb-latest-venv,
benchmarks/requirements-latest.txt.) Per point: tokens/s, model FLOPs
utilisation against the GEMM peak measured on this machine in the same run
(benchmarks/gemm_peak_bench.cc) and against a datasheet peak where one
exists (GPUs; none for a virtual CPU), the step-time breakdown (attention,
router, permute, dispatch, experts, combine, unpermute, LM head + loss,
norms and other compute, gradient sync, optimizer), dropped fraction and
peak resident memory per rank. Every point is validated before it is
timed: step_breakdown_bench checks a multi-rank step's loss against one
process, hf_step_bench.py checks HF's losses and gradients against ours.
Sweep file format: benchmarks/sweeps/default.yaml.
"""
import argparse
import csv
import datetime
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_compare  # noqa: E402

REPO = step_compare.REPO
PHASES = ["embedding", "norm", "attention", "router", "permute", "dispatch", "experts", "combine",
          "unpermute", "lm_head_loss"]
SWEEP_KEYS = {"name", "title", "set", "grid", "zip", "hf", "layouts", "global_micro_batches",
              "micro_batches_per_rank"}
# Dense peaks from datasheets (FLOP/s), used for MFU where the device is one
# of these; none exists for a virtual CPU (the vCPU's core, SMT sharing and
# clock are not published), so CPU rows report the measured peak only.
DATASHEET_PEAKS = {"H100 SXM": {"bf16": 989e12, "f32": 67e12}, "H200": {"bf16": 989e12, "f32": 67e12},
                   "A100": {"bf16": 312e12, "f32": 19.5e12}}


def log(msg):
    print(f"[scaling {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_sweep(path):
    with open(path) as f:
        s = yaml.safe_load(f)
    for key in ("name", "config", "cores", "steps", "warmup"):
        if key not in s:
            sys.exit(f"scaling.py: {path}: missing '{key}'")
    for sw in s.get("sweeps", []):
        unknown = set(sw) - SWEEP_KEYS
        if unknown:
            sys.exit(f"scaling.py: {path}: sweep {sw.get('name')}: unknown keys {sorted(unknown)}")
        if sum(k in sw for k in ("grid", "zip", "layouts")) != 1:
            sys.exit(f"scaling.py: {path}: sweep {sw.get('name')} needs exactly one of grid, zip, layouts")
    return s


def points(sweep):
    """[(label, {field: value} overrides, ranks, ep, global micro-batches)] of one sweep."""
    out = []
    if "grid" in sweep:
        keys = list(sweep["grid"])
        for values in itertools.product(*(sweep["grid"][k] for k in keys)):
            out.append((dict(zip(keys, values)), 1, 1, None))
    elif "zip" in sweep:
        keys = list(sweep["zip"])
        for values in zip(*(sweep["zip"][k] for k in keys)):
            out.append((dict(zip(keys, values)), 1, 1, None))
    else:
        for lay in sweep["layouts"]:
            g = sweep.get("global_micro_batches") or sweep["micro_batches_per_rank"] * lay["ranks"]
            out.append(({}, lay["ranks"], lay["ep"], g))
    result = []
    for fields, ranks, ep, g in out:
        if fields.get("moe.top_k", 0) > fields.get("moe.num_experts", 1 << 30):
            continue  # top-k above the expert count: not a model
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in fields.items()) or f"np {ranks}, ep {ep}"
        result.append((label, fields, ranks, ep, g))
    return result


run = step_compare.run_logged


def machine(build_dir):
    def out(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    lscpu = dict(l.split(":", 1) for l in out("lscpu").splitlines() if ":" in l)
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    return dict(cpu=lscpu.get("Model name", "").strip(), cores=os.cpu_count(),
                hypervisor=lscpu.get("Hypervisor vendor", "").strip(), memory_gib=round(int(mem) / 2**20, 1),
                os=out("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"), kernel=platform.release(),
                compiler=out("c++", "--version").splitlines()[0] if out("c++", "--version") else "",
                openblas=out("dpkg-query", "-W", "-f=${Version}", "libopenblas0-openmp"),
                commit=out("git", "-C", REPO, "rev-parse", "--short", "HEAD"),
                dirty=bool(out("git", "-C", REPO, "status", "--porcelain", "--untracked-files=no")),
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), build=build_dir)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def measure_peaks(build_dir, thread_counts, out_dir, log_file):
    peaks = {}
    for t in sorted(set(thread_counts)):
        path = os.path.join(out_dir, f"gemm_peak_t{t}.json")
        run([os.path.join(build_dir, "benchmarks", "gemm_peak_bench"), "--json", path], step_compare.bench_env(t), log_file)
        with open(path) as f:
            peaks[t] = json.load(f)
        log(f"measured f32 GEMM peak with {t} thread(s): {peaks[t]['peak_gflops']:.1f} GFLOP/s, "
            f"triad {peaks[t]['triad_gb_per_s']:.1f} GB/s")
    return peaks


TORCH_GEMM = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
best = {}
for n in (256, 512, 1024):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times, start = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < 0.3:
        t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
    best[n] = 2 * n ** 3 / min(times) / 1e9
print(json.dumps(dict(torch=torch.__version__, peak_gflops=max(best.values()), sizes=best)))
"""


def measure_torch_gemm(thread_counts, log_file):
    """PyTorch's f32 matmul rate in the baseline's venv (best of 256..1024)."""
    python = os.path.join(step_compare.LATEST_VENV, "bin", "python")
    if not os.access(python, os.X_OK):
        return {}
    out = {}
    for t in sorted(set(thread_counts)):
        out[t] = json.loads(run([python, "-c", TORCH_GEMM, str(t)], step_compare.bench_env(t), log_file))
        log(f"PyTorch f32 matmul with {t} thread(s): {out[t]['peak_gflops']:.1f} GFLOP/s")
    return out


def run_point(spec, sweep, point, build_dir, work, log_file):
    label, fields, ranks, ep, g = point
    threads = max(1, spec["cores"] // ranks)
    path = os.path.join(work, f"{sweep['name']}_{len(os.listdir(work))}.json")
    cmd = [os.path.join(build_dir, "benchmarks", "step_breakdown_bench"), "--config", spec["config"],
           "--data", spec["data"], "--ep", str(ep), "--steps", str(spec["steps"]), "--warmup", str(spec["warmup"]),
           "--global_micro_batches", str(g or ranks), "--json", path]
    for s in list(spec.get("set", [])) + list(sweep.get("set", [])) + [f"{k}={v}" for k, v in fields.items()]:
        cmd += ["--set", s]
    if ranks > 1:
        cmd = ["mpirun", "-np", str(ranks), "--bind-to", "none"] + cmd
    run(cmd, step_compare.bench_env(threads), log_file)
    with open(path) as f:
        r = json.load(f)
    r.update(sweep=sweep["name"], label=label, fields=fields, ranks=ranks, threads_per_rank=threads,
             oversubscribed=ranks * threads > spec["cores"])
    return r


def mfu_row(r, peaks, cores):
    """MFU of a point: model FLOP/s over the measured peak of the cores it used."""
    used = min(cores, r["ranks"] * r["threads_per_rank"])
    peak = peaks.get(used) or peaks[max(peaks)]
    flops = r["tokens_per_s"] * r["flops_per_token"]
    return flops / 1e9, flops / (peak["peak_gflops"] * 1e9)


def flatten(r, peaks, cores):
    gflops, mfu = mfu_row(r, peaks, cores)
    row = dict(sweep=r["sweep"], point=r["label"], ranks=r["ranks"], ep=r["ep"],
               threads_per_rank=r["threads_per_rank"], oversubscribed=r["oversubscribed"],
               num_experts=r["num_experts"], top_k=r["top_k"], d_model=r["d_model"],
               expert_ffn_dim=r["expert_ffn_dim"], micro_batch=r["micro_batch"], seq_len=r["seq_len"],
               tokens_per_step=r["tokens_per_step"], capacity_factor=r["fields"].get("moe.capacity_factor_train", ""),
               tokens_per_s=round(r["tokens_per_s"], 1), step_ms=round(1e3 * r["step_s"], 2),
               gflops=round(gflops, 2), mfu_measured=round(mfu, 4), mfu_datasheet="",
               dropped_fraction=round(r["dropped_fraction"], 5), peak_rss_mib=round(max(r["peak_rss_mib"]), 1),
               validated_loss=r["validated_against"] if r["validated_against"] is not None else "one process")
    phases = r["phases_s"]
    for p in PHASES:
        row[f"{p}_ms"] = round(1e3 * phases[p], 3)
    row["other_compute_ms"] = round(1e3 * (r["times_s"]["compute"] + r["times_s"]["dispatch"] + r["times_s"]["combine"]
                                           - sum(phases.values())), 3)
    row["grad_sync_ms"] = round(1e3 * r["times_s"]["grad_sync"], 3)
    row["optimizer_ms"] = round(1e3 * r["times_s"]["optimizer"], 3)
    if "hf_eager" in r:
        row["hf_eager_tokens_per_s"] = round(r["hf_eager"]["train_tokens_per_s"], 1)
        row["switchboard_tokens_per_s_same_run"] = round(r["hf_eager"]["switchboard_train_tokens_per_s"], 1)
        row["speedup_vs_hf_eager"] = round(r["hf_eager"]["speedup"], 3)
    return row


def run_hf_point(spec, sweep, point, build_dir, log_file):
    """HF eager vs model_step_bench on one sweep point (1 round)."""
    _, fields, _, _, _ = point
    sets = list(spec.get("set", [])) + list(sweep.get("set", [])) + [f"{k}={v}" for k, v in fields.items()]
    c = step_compare.compare(spec["config"], sets, spec["cores"], 1, 2, 4, ["eager"], build_dir, log=log_file)
    hf, sb = c["impls"]["hf_eager"], c["impls"]["switchboard"]
    return dict(train_tokens_per_s=hf["train_tokens_per_s"], switchboard_train_tokens_per_s=sb["train_tokens_per_s"],
                speedup=hf["switchboard_speedup"], max_grad_rel_diff=hf["max_grad_rel_diff"])


def write_docs(report, out, plots, spec, sweep_path):
    """docs/benchmarks.md, docs/benchmarks/*.png and benchmarks/results/scaling_<sweep>.{json,csv}
    from a finished sweep's directory."""
    import scaling_docs  # noqa: E402 (matplotlib only when plotting)
    docs_dir = os.path.join(REPO, "docs", "benchmarks")
    os.makedirs(docs_dir, exist_ok=True)
    for p in plots:
        shutil.copy(os.path.join(out, p), os.path.join(docs_dir, p))
    results = os.path.join(REPO, "benchmarks", "results", f"scaling_{spec['name']}")
    shutil.copy(os.path.join(out, "scaling.json"), results + ".json")
    shutil.copy(os.path.join(out, "scaling.csv"), results + ".csv")
    path = scaling_docs.write(report, plots, os.path.join(REPO, "docs", "benchmarks.md"), sweep_path)
    log(f"wrote {os.path.relpath(path, REPO)}, docs/benchmarks/*.png, {os.path.relpath(results, REPO)}.{{json,csv}}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default=os.path.join(REPO, "benchmarks", "sweeps", "default.yaml"))
    ap.add_argument("--quick", action="store_true", help="benchmarks/sweeps/quick.yaml")
    ap.add_argument("--out", help="results directory (default runs/bench/<sweep>-<time>)")
    ap.add_argument("--docs", action="store_true",
                    help="also write docs/benchmarks.md, docs/benchmarks/*.png and benchmarks/results/scaling_<sweep>.{json,csv}")
    ap.add_argument("--skip_baselines", action="store_true", help="no HF rows (no venv needed)")
    ap.add_argument("--build_dir", default=os.environ.get("SB_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--docs_from", metavar="DIR",
                    help="write the docs (as --docs) from a finished sweep's directory, without rerunning it")
    args = ap.parse_args()
    if args.docs_from:
        with open(os.path.join(args.docs_from, "scaling.json")) as f:
            report = json.load(f)
        plots = sorted(p for p in os.listdir(args.docs_from) if p.endswith(".png"))
        write_docs(report, args.docs_from, plots, report["sweep"], os.path.join(REPO, report["sweep_file"]))
        return
    sweep_path = os.path.join(REPO, "benchmarks", "sweeps", "quick.yaml") if args.quick else args.sweep
    spec = load_sweep(sweep_path)
    out = args.out or os.path.join(REPO, "runs", "bench", f"{spec['name']}-{time.strftime('%Y%m%d-%H%M%S')}")
    work = os.path.join(out, "points")
    os.makedirs(work, exist_ok=True)
    log_file = open(os.path.join(out, "commands.log"), "w")
    started = time.time()
    report = dict(sweep=spec, sweep_file=os.path.relpath(sweep_path, REPO), machine=machine(args.build_dir),
                  load_start=loadavg(), dropped_blas_env=step_compare.dropped_blas_env())
    log(f"{spec['name']} sweep -> {out}; load average {' '.join(report['load_start'])}")

    if not os.path.exists(os.path.join(args.build_dir, "build.ninja")):
        run(["bash", "launch/build.sh"], log=log_file)
    run(["ninja", "-C", args.build_dir, "--quiet", "step_breakdown_bench", "model_step_bench", "gemm_peak_bench",
         "switchboard"], log=log_file)
    if not os.path.exists(os.path.join(REPO, spec["data"])):
        run(["bash", "launch/prepare_default_data.sh"], log=log_file)

    base = spec.get("baselines") or {}
    thread_counts = [spec["cores"], 1] + list(base.get("threads", []))
    report["peaks"] = measure_peaks(args.build_dir, thread_counts, out, log_file)
    report["torch_gemm"] = {} if args.skip_baselines else measure_torch_gemm(thread_counts, log_file)

    report["baselines"] = []
    if base and not args.skip_baselines:
        for shape in base["shapes"]:
            for t in base["threads"]:
                log(f"baseline {shape['name']}, {t} threads: {base['rounds']} rounds of Switchboard, "
                    f"HF {' and '.join(base['modes'])}")
                c = step_compare.compare(spec["config"], list(spec.get("set", [])) + shape["set"], t, base["rounds"],
                                         base["warmup"], base["iters"], base["modes"], args.build_dir, log=log_file,
                                         variants=base.get("switchboard_variants"))
                c.update(name=shape["name"], title=shape.get("title", shape["name"]))
                report["baselines"].append(c)

    report["points"] = []
    for sweep in spec.get("sweeps", []):
        for point in points(sweep):
            log(f"{sweep['name']}: {point[0]}")
            r = run_point(spec, sweep, point, args.build_dir, work, log_file)
            if sweep.get("hf") == "eager" and not args.skip_baselines:
                r["hf_eager"] = run_hf_point(spec, sweep, point, args.build_dir, log_file)
            report["points"].append(r)
    report["load_end"] = loadavg()
    report["minutes"] = round((time.time() - started) / 60, 1)
    report["rows"] = [flatten(r, report["peaks"], spec["cores"]) for r in report["points"]]

    with open(os.path.join(out, "scaling.json"), "w") as f:
        json.dump(report, f, indent=1)
    fields = sorted({k for row in report["rows"] for k in row}, key=lambda k: list(report["rows"][0]).index(k)
                    if k in report["rows"][0] else 999)
    with open(os.path.join(out, "scaling.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(report["rows"])
    import scaling_plots  # noqa: E402 (matplotlib only when plotting)
    plots = scaling_plots.plot_all(report, out)
    log(f"wrote {out}/scaling.json, scaling.csv, {', '.join(plots)} in {report['minutes']} min; "
        f"load average {' '.join(report['load_end'])}")
    if args.docs:
        write_docs(report, out, plots, spec, sweep_path)

if __name__ == "__main__":
    main()

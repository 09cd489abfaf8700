#!/usr/bin/env bash
# Training-step time on the CPU, Switchboard against PyTorch running the same
# model on the same weights and batch, in the same run (docs/performance.md).
#   bash benchmarks/cpu_step_vs_torch.sh [model_step_bench flags, e.g. --set train.micro_batch_size=8]
# Environment: CONFIG (configs/tiny.textproto), THREADS ("1 2"), ROUNDS (5),
# WARMUP (3), ITERS (10), OUT (benchmarks/results/cpu_step_vs_torch: .json
# and .md are written), SB_BUILD_DIR (build), SB_REFERENCE_VENV.
#
# For each thread count, ROUNDS rounds of four processes in turn (A B C D,
# A B C D, ...), so that a drift in machine speed hits all of them alike:
#   A switchboard         model_step_bench: writes weights, batch, losses, gradients; times
#   B pytorch             torch_step_bench.py --moe vectorized, OpenBLAS's OpenMP build
#   C pytorch, pthread    the same with Debian's default libblas (OpenBLAS pthread build)
#   D pytorch, reference  --moe reference (reference_model.py's loop), OpenMP OpenBLAS
# B, C and D first check loss, drops and gradients against A's (same round),
# then time. B links the same BLAS as Switchboard (LD_LIBRARY_PATH picks
# openblas-openmp's libblas.so.3): the like-for-like baseline. Each process
# reports the median of ITERS steps; the summary takes the median over
# rounds, and the ratio A/B pair by pair within a round.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SB_BUILD_DIR:-build}
venv=${SB_REFERENCE_VENV:-/opt/sb-reference-venv}
config=${CONFIG:-configs/tiny.textproto}
threads_list=${THREADS:-1 2}
rounds=${ROUNDS:-5}
warmup=${WARMUP:-3}
iters=${ITERS:-10}
out=${OUT:-benchmarks/results/cpu_step_vs_torch}
omp_blas=/usr/lib/$(gcc -print-multiarch)/openblas-openmp

[ -f "$build/build.ninja" ] || bash launch/build.sh
ninja -C "$build" --quiet model_step_bench
[ -x "$venv/bin/python" ] || bash tests/reference/setup_env.sh
if [ ! -f "$omp_blas/libblas.so.3" ]; then
  echo "cpu_step_vs_torch: $omp_blas/libblas.so.3 missing (apt-get install libopenblas-openmp-dev)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "[cpu_step_vs_torch] load average $load_start; $rounds rounds x {$threads_list} threads"
for t in $threads_list; do
  for r in $(seq 1 "$rounds"); do
    d="$work/threads$t/round$r"
    export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
    "$build/benchmarks/model_step_bench" --config "$config" --warmup "$warmup" --iters "$iters" \
        --out_dir "$d" "$@"
    torch_bench=("$venv/bin/python" benchmarks/torch_step_bench.py --switchboard_json "$d/switchboard.json"
                 --threads "$t")
    LD_LIBRARY_PATH=$omp_blas "${torch_bench[@]}" --moe vectorized --json "$d/pytorch.json"
    "${torch_bench[@]}" --moe vectorized --json "$d/pytorch_pthread_blas.json"
    LD_LIBRARY_PATH=$omp_blas "${torch_bench[@]}" --moe reference --json "$d/pytorch_reference_moe.json"
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$out")"
python3 - "$work" "$out" "$load_start" "$load_end" "$rounds" "$threads_list" <<'PY'
import json, os, statistics, subprocess, sys
work, out, load_start, load_end, rounds, threads_list = sys.argv[1:]
impls = [("switchboard", "Switchboard"),
         ("pytorch", "PyTorch (vectorized MoE, OpenMP OpenBLAS)"),
         ("pytorch_pthread_blas", "PyTorch (vectorized MoE, Debian default pthread OpenBLAS)"),
         ("pytorch_reference_moe", "PyTorch (reference_model.py MoE loop, OpenMP OpenBLAS)")]
med = statistics.median
def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True).stdout
def load(path):
    with open(path) as f:
        return json.load(f)
lscpu = run("lscpu").splitlines()
rows, report = [], dict(
    load_average_start=load_start, load_average_end=load_end, rounds=int(rounds), cores=os.cpu_count(),
    cpu=next((l.split(":", 1)[1].strip() for l in lscpu if l.startswith("Model name")), ""),
    commit=run("git", "rev-parse", "--short", "HEAD").strip(), results=[])
for t in threads_list.split():
    runs = {k: [load(f"{work}/threads{t}/round{r}/{k}.json") for r in range(1, int(rounds) + 1)]
            for k, _ in impls}
    sb = runs["switchboard"]
    for key, label in impls:
        rs = runs[key]
        entry = dict(impl=key, label=label, threads=int(t),
                     step_ms=med(r["step_ms"] for r in rs),
                     step_ms_per_round=[r["step_ms"] for r in rs],
                     fwd_ms=med(med(r["fwd_ms"]) for r in rs), bwd_ms=med(med(r["bwd_ms"]) for r in rs),
                     adamw_ms=med(med(r["adamw_ms"]) for r in rs),
                     tokens_per_s=med(r["tokens_per_s"] for r in rs), gflops=med(r["gflops"] for r in rs),
                     switchboard_speedup=med(r["step_ms"] / s["step_ms"] for r, s in zip(rs, sb)))
        if key != "switchboard":
            entry.update(blas=rs[0]["blas"][0], torch_version=rs[0]["torch_version"],
                         max_loss_diff=max(r["validation"]["loss.total"] for r in rs),
                         max_grad_rel_diff=max(r["validation"]["grad.max_rel"] for r in rs))
        else:
            entry.update(config=rs[0]["config"], overrides=rs[0]["overrides"], model=rs[0]["model"],
                         batch=rs[0]["batch"], seq_len=rs[0]["seq_len"], params=rs[0]["params"],
                         flops_per_token=rs[0]["flops_per_token"], warmup=rs[0]["warmup"],
                         iters=rs[0]["iters"], loss=rs[0]["loss"])
        report["results"].append(entry)
        spread = f"{min(entry['step_ms_per_round']):.0f}-{max(entry['step_ms_per_round']):.0f}"
        rows.append(f"| {t} | {label} | {entry['tokens_per_s']:,.0f} | {entry['step_ms']:.1f} ({spread}) | "
                    f"{entry['fwd_ms']:.1f} / {entry['bwd_ms']:.1f} | {entry['adamw_ms']:.1f} | "
                    f"{entry['gflops']:.1f} | {entry['switchboard_speedup']:.2f}x |")
with open(out + ".json", "w") as f:
    json.dump(report, f, indent=1)
table = ("| threads | implementation | tokens/s | ms/step fwd+bwd (range over rounds) | fwd / bwd ms | "
         "AdamW ms | GFLOP/s | Switchboard speedup |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
with open(out + ".md", "w") as f:
    f.write(f"Median over {rounds} rounds (each the median of its timed steps); load average "
            f"{load_start} at the start, {load_end} at the end; {report['cpu']}, commit "
            f"{report['commit']}.\n\n{table}\n")
print(table)
print(f"[cpu_step_vs_torch] load average {load_start} -> {load_end}; wrote {out}.json, {out}.md")
PY

#!/usr/bin/env bash
# Training-step time on the CPU, Switchboard against Hugging Face
# MixtralForCausalLM under the newest PyTorch (eager and torch.compile), on
# the same model, weights and batch, validated, in alternating rounds
# (benchmarks/step_compare.py; docs/benchmarks.md has the method and results).
#   bash benchmarks/cpu_step_vs_torch.sh [--set a.b=v ...]
# Environment: CONFIG (configs/tiny.textproto), THREADS ("2"), ROUNDS (3),
# WARMUP (3), ITERS (10), MODES (eager,compile), OUT (benchmarks/results/
# cpu_step_vs_hf: one JSON per thread count), SB_BUILD_DIR (build),
# SB_LATEST_VENV (/opt/sb-latest-venv, from benchmarks/requirements-latest.txt).
# Both shapes of docs/benchmarks.md:
#   bash benchmarks/cpu_step_vs_torch.sh
#   bash benchmarks/cpu_step_vs_torch.sh --set model.d_model=512 --set model.expert_ffn_dim=1024 \
#     --set model.num_heads=8 --set model.num_kv_heads=4 --set model.max_seq_len=256 \
#     --set train.seq_len=256 --set train.micro_batch_size=8
# (The PyTorch 1.13 baseline this script ran before, Debian's python3-torch on
# tests/reference/reference_model.py, is gone: HF Mixtral on the newest
# PyTorch is the baseline users compare with.)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SB_BUILD_DIR:-build}
out=${OUT:-benchmarks/results/cpu_step_vs_hf}
[ -f "$build/build.ninja" ] || bash launch/build.sh
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "[cpu_step_vs_torch] load average $load_start"
for t in ${THREADS:-2}; do
  /usr/bin/python3 benchmarks/step_compare.py --config "${CONFIG:-configs/tiny.textproto}" --threads "$t" \
    --rounds "${ROUNDS:-3}" --warmup "${WARMUP:-3}" --iters "${ITERS:-10}" --modes "${MODES:-eager,compile}" \
    --build_dir "$build" --json "${out}_t$t.json" "$@"
done
echo "[cpu_step_vs_torch] load average $load_start -> $(cut -d' ' -f1-3 /proc/loadavg); wrote ${out}_t*.json"

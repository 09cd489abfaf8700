#!/usr/bin/env bash
# Two builds' training step, alternating (docs/performance.md, "What changed"):
#   bash benchmarks/ab_step_bench.sh BUILD_A BUILD_B [ROUNDS]
# e.g. a build of main in build-main/out against build/. For each shape (tiny
# and d512 of docs/performance.md, HF-style routing) and 1 and 2 threads,
# ROUNDS (3) rounds of A then B, each model_step_bench with 2 warm-up and 6
# timed steps; prints forward, backward and AdamW ms and the load average.
# An inherited OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE is removed (as in the
# benchmarks) so that both builds run the kernels OpenBLAS picks.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
d512=(--set model.d_model=512 --set model.expert_ffn_dim=1024 --set model.num_heads=8
      --set model.num_kv_heads=4 --set model.max_seq_len=256 --set train.seq_len=256
      --set train.micro_batch_size=8)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for shape in tiny d512; do
  extra=()
  [ "$shape" = d512 ] && extra=("${d512[@]}")
  for t in 1 2; do
    for r in $(seq 1 "$rounds"); do
      for build in "$a" "$b"; do
        line=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
          "$build/benchmarks/model_step_bench" --config configs/tiny.textproto \
          --set moe.capacity_factor_train=0 --set moe.normalize_top_k=true "${extra[@]}" \
          --out_dir "$work/$shape" --warmup 2 --iters 6 2>&1 | grep '^switchboard')
        echo "$shape threads $t round $r $build: $(echo "$line" | grep -oE 'fwd [0-9.]+ bwd [0-9.]+ adamw [0-9.]+ ms')" \
             "| load $(cut -d' ' -f1 /proc/loadavg)"
      done
    done
  done
done

#!/usr/bin/env bash
# Trains the tiny config (configs/tiny.textproto) once per routing variant of
# docs/moe_semantics.md "Routing variants", each from the command line with
# --set overrides, on one core, and tabulates final validation loss and load
# balance (benchmarks/routing_variants_table.py) into
# benchmarks/results/routing_variants.{json,md}; docs/routing_variants.md
# discusses the numbers.
#
#   bash launch/prepare_default_data.sh            # once: runs/data/python-docs
#   bash benchmarks/routing_variants.sh [STEPS]    # default 600 steps (tiny.textproto's)
#   SB_VARIANTS="baseline expert_choice" bash benchmarks/routing_variants.sh   # a subset
#
# Every run: OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1, seed 1234, 16 x 128
# tokens per step, validation on 16 batches (262k tokens) at the end.
# 4-5 min of CPU per run (600 steps, one core); wall time depends on the neighbours.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-600}
bin=${SB_BIN:-build/launch/switchboard}
out=${SB_OUT:-runs/routing_variants}
[ -x "$bin" ] || { echo "build $bin first (bash launch/build.sh)" >&2; exit 1; }
[ -d runs/data/python-docs/train ] || { echo "run bash launch/prepare_default_data.sh first" >&2; exit 1; }

# name|--set overrides (on top of configs/tiny.textproto). The controls:
# two more seeds of the baseline (run-to-run spread), and its gates
# renormalised (what GShard's rule adds besides the random second expert).
variants=(
  "baseline|"
  "baseline_seed1235|train.seed=1235"
  "baseline_seed1236|train.seed=1236"
  "baseline_normalized|moe.normalize_top_k=true"
  "noisy_topk_cv|moe.noisy_gating=true moe.balance_loss=CV_IMPORTANCE_LOAD moe.aux_loss_coef=0.1"
  "gshard_random|moe.second_expert_policy=RANDOM moe.normalize_top_k=true"
  "batch_prioritized|moe.batch_prioritized_routing=true"
  "expert_choice|moe.routing=EXPERT_CHOICE moe.capacity_factor_train=1.0 moe.capacity_factor_eval=1.0"
  "deepseek_shared_finegrained|moe.num_experts=15 moe.top_k=3 model.expert_ffn_dim=128 moe.num_shared_experts=1"
  "aux_loss_free|moe.aux_loss_coef=0 moe.aux_free_bias_update_rate=0.001"
  "expert_dropout|moe.expert_dropout=0.1"
)
selected=${SB_VARIANTS:-}
mkdir -p "$out"
for entry in "${variants[@]}"; do
  name=${entry%%|*}
  sets=${entry#*|}
  if [ -n "$selected" ] && [[ " $selected " != *" $name "* ]]; then continue; fi
  args=(--set train.steps="$steps" --set train.log_every=25 --set train.eval_every="$steps"
        --set train.eval_batches=16 --set checkpoint.keep_last=1)
  for s in $sets; do args+=(--set "$s"); done
  rm -rf "${out:?}/$name"
  echo "[variants] $name: ${sets:-(tiny.textproto as is)}"
  start=$(date +%s)
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin" train --config configs/tiny.textproto \
    "${args[@]}" --run_dir "$out/$name" >"$out/$name.log" 2>&1
  echo "[variants] $name: $(( $(date +%s) - start )) s, $(grep -c '"step"' "$out/$name/metrics.jsonl") records"
done
python3 benchmarks/routing_variants_table.py "$out" --steps "$steps" \
  --json benchmarks/results/routing_variants.json --md benchmarks/results/routing_variants.md

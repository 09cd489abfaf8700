#!/usr/bin/env bash
# The loss jump at step 0 of sparse upcycling, per routing variant
# (docs/upcycling.md, "What changes the function"). Needs the walk-through's
# directories (launch/upcycle_walkthrough.sh): WORK/dense-hf-saved (the dense
# model as transformers saved it) and WORK/moe-init (its upcycle to 8 experts
# top-2, routers N(0, 0.02^2)).
#
#   bash benchmarks/upcycle_loss_jump.sh [WORK]          (default runs/walkthrough)
#
# For each variant: the validation loss over the whole val split (eval, its
# capacity factor = the variant's) and the loss of training step 1 (before
# any update, on the first training batch, the variant's training capacity
# factor), against the dense model's. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SB="${SB_BIN:-build/launch/switchboard}"
W="${1:-runs/walkthrough}"
DATA=runs/data/python-docs
MOE=configs/upcycle_8x_top2.textproto
T="$(mktemp -d "${TMPDIR:-/tmp}/sb_jump.XXXXXX")"
trap 'rm -rf "$T"' EXIT
for d in "$W/dense-hf-saved" "$W/moe-init"; do
  [ -d "$d" ] || { echo "$d missing: run launch/upcycle_walkthrough.sh first" >&2; exit 1; }
done
# Routers all zero: uniform probabilities, every tie goes to experts 0 and 1.
"$SB" upcycle --from "$W/dense-hf-saved" --config "$MOE" --out "$T/moe-zeros" \
  --set upcycle.router_init=ZEROS >/dev/null

json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); $2" "$1"; }
first_loss() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['loss'])" "$1"; }

# measure NAME WEIGHTS CONFIG TRAIN_CF EVAL_CF SETTINGS...
measure() {
  local name=$1 weights=$2 config=$3 train_cf=$4 eval_cf=$5
  shift 5
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  "$SB" eval --ckpt "$weights" --data "$DATA" --seq_len 128 --batch_size 16 --no_progress --json "$T/e.json" \
    ${eval_cf:+--set moe.capacity_factor_eval=$eval_cf} "${sets[@]}" >/dev/null
  local run="$T/run_$RANDOM"
  "$SB" train --config "$config" --init_from "$weights" --run_dir "$run" --set train.steps=1 \
    --set train.log_every=1 --set data.val_path= ${train_cf:+--set moe.capacity_factor_train=$train_cf} \
    "${sets[@]}" >/dev/null
  local val drop step1
  val=$(json "$T/e.json" "print(r['loss'])")
  drop=$(json "$T/e.json" "l=r['layers']; print(100*sum(x['dropped_fraction'] for x in l)/len(l) if l else 0)")
  step1=$(first_loss "$run/metrics.jsonl")
  echo "$name|$val|$drop|$step1" >>"$T/rows"
}

measure "dense (LlamaForCausalLM weights)" "$W/dense-hf-saved" configs/dense_small.textproto "" ""
measure "MoE, renormalised top-2, dropless" "$W/moe-init" "$MOE" 0 0
measure "MoE, raw gates (Switch), dropless" "$W/moe-init" "$MOE" 0 0 moe.normalize_top_k=false
measure "MoE, renormalised, capacity 2.0" "$W/moe-init" "$MOE" 2.0 2.0
measure "MoE, renormalised, capacity 1.25" "$W/moe-init" "$MOE" 1.25 1.25
measure "MoE, renormalised, capacity 1.0" "$W/moe-init" "$MOE" 1.0 1.0
measure "MoE, raw gates, capacity 1.25 (ST-MoE)" "$W/moe-init" "$MOE" 1.25 1.25 moe.normalize_top_k=false
measure "MoE, zero routers, renormalised, dropless" "$T/moe-zeros" "$MOE" 0 0
measure "MoE, zero routers, renormalised, capacity 1.25" "$T/moe-zeros" "$MOE" 1.25 1.25

python3 - "$T/rows" <<'PY'
import sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1])]
dense_val, dense_step = float(rows[0][1]), float(rows[0][3])
print("| variant | val loss | change | dropped choices | step-1 train loss | change |")
print("|---|---|---|---|---|---|")
def change(d):  # float32 rounding differences show as such, not as "-0.0000"
    return f"{d:+.4f}" if abs(d) >= 1e-4 else f"{d:+.1e}"
for name, val, drop, step in rows:
    val, drop, step = float(val), float(drop), float(step)
    print(f"| {name} | {val:.4f} | {change(val - dense_val)} | {drop:.1f}% | {step:.4f} | {change(step - dense_step)} |")
PY

#!/usr/bin/env bash
# The walk-through of docs/upcycling.md as one script: train a small dense
# model on the default corpus, export it to Hugging Face Llama, load it in
# transformers and save it with save_pretrained, upcycle that directory to an
# 8-expert top-2 MoE, continue training, generate text, evaluate, export to
# Hugging Face Mixtral, load it in transformers and compare logits.
#
#   bash launch/upcycle_walkthrough.sh [WORK_DIR]     (default runs/walkthrough; must not exist)
#
# Needs the build (launch/build.sh) and the newest transformers in a venv
# (bash tests/reference/setup_latest_env.sh; SB_PY overrides its python).
# Measured: 80 minutes on 2 cores shared with four other jobs (load 9-14),
# most of it the two training runs (~1M tokens at 450 tok/s, ~0.4M at 225).
set -euo pipefail
cd "$(dirname "$0")/.."
SB="${SB_BIN:-build/launch/switchboard}"
PY="${SB_PY:-/opt/sb-latest-venv/bin/python}"
W="${1:-runs/walkthrough}"
DATA=runs/data/python-docs
[ -x "$SB" ] || { echo "[walkthrough] $SB missing: bash launch/build.sh" >&2; exit 1; }
"$PY" -c "import transformers, torch" 2>/dev/null ||
  { echo "[walkthrough] $PY has no transformers: bash tests/reference/setup_latest_env.sh" >&2; exit 1; }
[ -e "$W" ] && { echo "[walkthrough] $W exists: remove it or pass another directory" >&2; exit 1; }
mkdir -p "$W"
step() { echo; echo "=== $* ==="; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

step "1. data: the Python docs corpus, 8192-piece SentencePiece"
bash launch/prepare_default_data.sh

step "2. train the dense model (configs/dense_small.textproto)"
"$SB" train --config configs/dense_small.textproto --run_dir "$W/dense"

step "3. export it as Hugging Face Llama"
"$SB" export-hf --ckpt "$W/dense" --out "$W/dense-hf"
"$PY" tests/reference/check_hf_export.py "$W/dense-hf" --switchboard "$SB" --tokens "$DATA" --seq 128

step "4. load it in transformers and save it with save_pretrained"
"$PY" tests/reference/check_hf_export.py "$W/dense-hf" --resave "$W/dense-hf-saved"

step "5. upcycle the transformers-written directory to 8 experts, top-2"
"$SB" upcycle --from "$W/dense-hf-saved" --config configs/upcycle_8x_top2.textproto --out "$W/moe-init"

# The same windows for every eval: an HF directory has no training seq_len.
EVAL=(--data "$DATA" --seq_len 128 --batch_size 16)

step "6. the upcycled MoE computes the dense model (same validation loss)"
"$SB" eval --ckpt "$W/dense-hf-saved" "${EVAL[@]}" --no_progress
"$SB" eval --ckpt "$W/moe-init" "${EVAL[@]}" --no_progress

step "7. continue training the MoE from the upcycled weights"
"$SB" train --config configs/upcycle_8x_top2.textproto --init_from "$W/moe-init" --run_dir "$W/moe"

step "8. generate"
"$SB" generate --ckpt "$W/moe" --prompt "The for statement in Python" --max_new_tokens 48
"$SB" generate --ckpt "$W/moe" --prompt "The for statement in Python" --max_new_tokens 48 \
  --temperature 0.8 --top_p 0.95 --seed 1

step "9. evaluate: loss, perplexity, routing per layer"
"$SB" eval --ckpt "$W/moe" "${EVAL[@]}" --json "$W/eval-moe.json"

step "10. export as Hugging Face Mixtral"
"$SB" export-hf --ckpt "$W/moe" --out "$W/moe-hf"

step "11. load it in transformers and compare logits with switchboard's"
"$PY" tests/reference/check_hf_export.py "$W/moe-hf" --switchboard "$SB" --tokens "$DATA" --seq 128

echo
echo "[walkthrough] done: $W"

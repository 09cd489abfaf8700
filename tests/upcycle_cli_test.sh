#!/usr/bin/env bash
# End to end through the CLI, at toy size (issue 11): train a dense model,
# export it as HF Llama, upcycle that directory to an MoE (same loss: function
# preserving), continue training with --init_from, generate, eval, export as
# HF Mixtral (same loss as the checkpoint), and every refusal exits 2 with a
# message naming the problem. No PyTorch needed (tests/reference/
# check_hf_export.py does the transformers side; docs/upcycling.md).
#   upcycle_cli_test.sh <switchboard binary>
set -uo pipefail
SB="${1:?usage: $0 path/to/switchboard}"
DOCS=/usr/share/doc/python3.11/html/_sources/tutorial
T="$(mktemp -d "${TMPDIR:-/tmp}/sb_upcycle_cli.XXXXXX")"
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
check() {  # check NAME EXPECTED_EXIT [NEEDLE] -- COMMAND...: exit code, and NEEDLE in the output
  local name="$1" want="$2" needle=""
  shift 2
  if [ "$1" != "--" ]; then needle="$1"; shift; fi
  shift
  "$@" >"$T/log" 2>&1
  local got=$?
  if [ "$got" -eq "$want" ] && { [ -z "$needle" ] || grep -qF -- "$needle" "$T/log"; }; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name: exit $got (want $want)${needle:+, looking for '$needle'}"
    sed 's/^/     /' "$T/log" | tail -20
  fi
}
expect() {  # expect NAME CONDITION...
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
# loss_of FILE: the scalar "loss" of a forward output (stdlib safetensors reader).
loss_of() {
  python3 - "$1" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    b, e = h["loss"]["data_offsets"]
    f.seek(8 + n + b)
    print(repr(struct.unpack("<d", f.read(e - b))[0]))
PY
}
same_loss() {  # same_loss A B RTOL
  python3 -c "import sys; a, b, r = map(float, sys.argv[1:]); sys.exit(abs(a - b) > r * abs(b))" "$1" "$2" "$3"
}

mkdir -p "$T/corpus"
cp "$DOCS"/*.rst.txt "$T/corpus/"
check "prepare-data" 0 -- "$SB" prepare-data --input "$T/corpus" --out "$T/ds" --vocab_size 400 \
  --val_fraction 0.1 --quiet
train="micro_batch_size: 4 seq_len: 32 log_every: 1 eval_batches: 1 seed: 5"
common="optimizer { lr: 3e-3 } schedule { warmup_steps: 0 }
data { train_path: \"$T/ds/train\" val_path: \"$T/ds/val\" }"
model="vocab_size: 400 d_model: 32 num_layers: 2 num_heads: 4 num_kv_heads: 2 ffn_dim: 64 max_seq_len: 64"
printf 'model { %s } moe { moe_layer_interval: 0 }\ntrain { steps: 6 %s }\n%s\n' "$model" "$train" "$common" \
  >"$T/dense.textproto"
printf 'model { %s expert_ffn_dim: 64 }\nmoe { num_experts: 4 top_k: 2 normalize_top_k: true capacity_factor_train: 0 capacity_factor_eval: 0 }\ntrain { steps: 4 %s }\n%s\n' \
  "$model" "$train" "$common" >"$T/moe.textproto"

check "train the dense model" 0 -- "$SB" train --config "$T/dense.textproto" --run_dir "$T/dense"
check "export it as HF Llama" 0 "LlamaForCausalLM" -- "$SB" export-hf --ckpt "$T/dense" --out "$T/dense_hf"
expect "config.json says llama" grep -q '"model_type": "llama"' "$T/dense_hf/config.json"
expect "tokenizer shipped" test -s "$T/dense_hf/tokenizer.model" -a -s "$T/dense_hf/tokenizer_config.json"
python3 - "$T/tokens.safetensors" <<'PY'
import json, struct, sys
ids = [(7 * i * i + 3 * i) % 400 for i in range(2 * 33)]
header = json.dumps({"tokens": {"dtype": "I32", "shape": [2, 33], "data_offsets": [0, 4 * len(ids)]}}).encode()
header += b" " * (-len(header) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{len(ids)}i", *ids))
PY
check "forward on the checkpoint" 0 -- "$SB" forward --config "$T/dense.textproto" \
  --weights "$T/dense/checkpoints/step_6" --tokens "$T/tokens.safetensors" --out "$T/fw_dense.safetensors"
check "forward on the HF export (no --config)" 0 -- "$SB" forward --weights "$T/dense_hf" \
  --tokens "$T/tokens.safetensors" --out "$T/fw_dense_hf.safetensors"
dense_loss=$(loss_of "$T/fw_dense.safetensors")
expect "float32 export is lossless (same loss, bit for bit)" same_loss "$(loss_of "$T/fw_dense_hf.safetensors")" "$dense_loss" 0

check "upcycle the HF directory" 0 "experts: copies of the dense FFN" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/moe_init"
expect "upcycle copied the tokenizer" cmp -s "$T/dense_hf/tokenizer.model" "$T/moe_init/tokenizer.model"
check "forward on the upcycled MoE" 0 -- "$SB" forward --config "$T/moe.textproto" \
  --weights "$T/moe_init" --tokens "$T/tokens.safetensors" --out "$T/fw_moe.safetensors"
expect "upcycled MoE has the dense loss (renormalised top-2, dropless)" \
  same_loss "$(loss_of "$T/fw_moe.safetensors")" "$dense_loss" 1e-5
# Routing-variant state the dense model lacks starts at zero (noise
# projection, selection bias): still the dense function at inference.
check "upcycle with noisy gating and aux-loss-free balancing" 0 "selection bias: zero" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/moe_variants" \
  --set moe.noisy_gating=true --set moe.aux_free_bias_update_rate=0.001
check "forward on the upcycled variant" 0 -- "$SB" forward --config "$T/moe.textproto" \
  --set moe.noisy_gating=true --set moe.aux_free_bias_update_rate=0.001 \
  --weights "$T/moe_variants" --tokens "$T/tokens.safetensors" --out "$T/fw_variants.safetensors"
expect "the variant's upcycled MoE has the dense loss" \
  same_loss "$(loss_of "$T/fw_variants.safetensors")" "$dense_loss" 1e-5
check "upcycle refuses shared experts" 2 "upcycling into shared experts is not supported" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/x" --set moe.num_shared_experts=1
cat >"$T/prompts.json" <<'EOF'
{"prepend_bos": false, "experts": [
  {"positive_prompts": ["for i in range(10):"]}, {"positive_prompts": ["The tutorial"]},
  {"positive_prompts": ["import os"], "negative_prompts": ["The"]}, {"positive_prompts": ["a list of"]}]}
EOF
check "upcycle with hidden-state routers" 0 "routers: hidden states" -- "$SB" upcycle --from "$T/dense_hf" \
  --config "$T/moe.textproto" --out "$T/moe_prompts" --router_prompts "$T/prompts.json"
check "upcycle refuses an existing --out" 2 "exists" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/moe_init"
check "upcycle names both values of a mismatch" 2 "model.d_model [hidden_size] = 32 in" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/x" --set model.d_model=64
check "upcycle wants one donor per expert" 2 "--expert_from given 2 times, moe.num_experts = 4" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/x" \
  --expert_from "$T/dense_hf" --expert_from "$T/dense_hf"
check "upcycle needs an HF directory" 2 "not a Hugging Face model directory" -- \
  "$SB" upcycle --from "$T/dense" --config "$T/moe.textproto" --out "$T/x"
echo '{"experts": [{"positive_prompts": ["a"]}]}' >"$T/bad_prompts.json"
check "router prompts must cover every expert" 2 "lists 1 experts, moe.num_experts = 4" -- \
  "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" --out "$T/x" --router_prompts "$T/bad_prompts.json"
expect "refused upcycles wrote nothing" test ! -e "$T/x"

check "train --init_from the upcycled weights" 0 "init_from: weights" -- \
  "$SB" train --config "$T/moe.textproto" --run_dir "$T/moe" --init_from "$T/moe_init"
expect "the run starts at step 1" grep -qE '^\{"step": ?1,' "$T/moe/metrics.jsonl"
check "train --init_from an HF directory of the same architecture" 0 "init_from: Hugging Face model" -- \
  "$SB" train --config "$T/dense.textproto" --run_dir "$T/dense2" --init_from "$T/dense_hf" --set train.steps=1
check "--init_from and --resume exclude each other" 2 "give one of them" -- \
  "$SB" train --config "$T/moe.textproto" --run_dir "$T/moe2" --init_from "$T/moe_init" --resume
check "prepare data with another tokenizer" 0 -- "$SB" prepare-data --input "$T/corpus" --out "$T/ds_other" \
  --vocab_size 420 --val_fraction 0 --quiet
check "--init_from refuses data of another tokenizer" 2 "prepare the data with that tokenizer" -- \
  "$SB" train --config "$T/moe.textproto" --run_dir "$T/moe4" --init_from "$T/moe_init" \
  --set data.train_path="$T/ds_other/train" --set data.val_path=
check "--init_from a dense model into an MoE config says to upcycle" 2 "run switchboard upcycle first" -- \
  "$SB" train --config "$T/moe.textproto" --run_dir "$T/moe3" --init_from "$T/dense_hf"

check "generate (greedy)" 0 -- "$SB" generate --ckpt "$T/moe" --prompt "Python is" --max_new_tokens 12
expect "generate prints the prompt first" grep -q "^Python is" "$T/log"
"$SB" generate --ckpt "$T/moe" --prompt "Python" --temperature 0.9 --top_p 0.9 --seed 3 --no_stream >"$T/g1" 2>/dev/null
"$SB" generate --ckpt "$T/moe" --prompt "Python" --temperature 0.9 --top_p 0.9 --seed 3 --no_stream >"$T/g2" 2>/dev/null
expect "sampling is reproducible from the seed" cmp -s "$T/g1" "$T/g2"
check "generate refuses a bad top_p" 2 "--top_p in (0, 1]" -- "$SB" generate --ckpt "$T/moe" --prompt x --top_p 0
check "eval" 0 "perplexity" -- "$SB" eval --ckpt "$T/moe" --data "$T/ds" --json "$T/eval.json" --no_progress
expect "eval --json has per-layer routing" grep -q '"dropped_fraction"' "$T/eval.json"
check "eval with capacity dropping reports drops" 0 "capacity_factor_eval 0.5" -- \
  "$SB" eval --ckpt "$T/moe" --data "$T/ds" --set moe.capacity_factor_eval=0.5 --set moe.min_capacity=0 --no_progress
check "eval refuses architecture overrides" 2 "not the architecture" -- \
  "$SB" eval --ckpt "$T/moe" --data "$T/ds" --set model.num_layers=3

check "export the MoE as HF Mixtral" 0 "MixtralForCausalLM" -- "$SB" export-hf --ckpt "$T/moe" --out "$T/moe_hf"
expect "config.json says mixtral" grep -q '"model_type": "mixtral"' "$T/moe_hf/config.json"
check "forward on the run's checkpoint" 0 -- "$SB" forward --config "$T/moe.textproto" \
  --weights "$T/moe/checkpoints/step_4" --tokens "$T/tokens.safetensors" --out "$T/fw_moe_ckpt.safetensors"
check "forward on the Mixtral export" 0 -- "$SB" forward --weights "$T/moe_hf" \
  --tokens "$T/tokens.safetensors" --out "$T/fw_moe_hf.safetensors"
check "forward names what --config and config.json disagree on" 2 "the config does not describe" -- \
  "$SB" forward --config "$T/dense.textproto" --weights "$T/moe_hf" --tokens "$T/tokens.safetensors" --out "$T/x.st"
expect "the Mixtral export computes the checkpoint's loss" \
  same_loss "$(loss_of "$T/fw_moe_hf.safetensors")" "$(loss_of "$T/fw_moe_ckpt.safetensors")" 0
check "bf16 sharded export" 0 -- "$SB" export-hf --ckpt "$T/moe" --out "$T/moe_hf16" --dtype bfloat16 --max_shard_mb 0.1
expect "sharded with an index" test -s "$T/moe_hf16/model.safetensors.index.json" -a \
  "$(ls "$T"/moe_hf16/model-0000?-of-0000?.safetensors | wc -l)" -ge 2
check "export refuses raw gates" 2 "moe.normalize_top_k = false" -- \
  "$SB" export-hf --ckpt "$T/moe" --out "$T/x" --set moe.normalize_top_k=false
check "export refuses capacity dropping at inference" 2 "moe.capacity_factor_eval = 2 drops tokens" -- \
  "$SB" export-hf --ckpt "$T/moe" --out "$T/x" --set moe.capacity_factor_eval=2
check "upcycle an interleaved MoE" 0 -- "$SB" upcycle --from "$T/dense_hf" --config "$T/moe.textproto" \
  --out "$T/moe_interleaved" --set moe.moe_layer_interval=2
check "export refuses interleaved dense/MoE blocks" 2 "interleaved dense and MoE blocks" -- \
  "$SB" export-hf --ckpt "$T/moe_interleaved" --out "$T/x"
expect "refused exports wrote nothing" test ! -e "$T/x"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

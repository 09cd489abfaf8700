#!/usr/bin/env bash
# End-to-end checks of the switchboard CLI: the forward command reproduces a
# golden loss, and bad flags, configs and files exit 2 with a message naming
# what is wrong, without writing outputs.
#   cli_test.sh <switchboard binary> <source dir>
set -uo pipefail
bin=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect_fail <exit code> <message substring> <command...>
expect_fail() {
  local code=$1 needle=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$code" ] || ! grep -qF -- "$needle" "$tmp/err"; then
    echo "FAIL: '$*' exited $got (want $code), stderr lacks '$needle':"
    cat "$tmp/err"
    failures=$((failures + 1))
  fi
}

# forward reproduces golden losses: Mixtral, and two routing variants whose
# evaluation-mode forward draws nothing at random (expert choice with a shared
# expert; shared experts with a selection bias read from the weights file).
for case in expert_choice_shared deepseek_shared_aux_free mixtral_top2_dropless; do
golden=$src/tests/golden/$case
"$bin" forward --config "$golden.textproto" --weights "${golden}_weights.safetensors" \
  --tokens "${golden}_golden.safetensors" --out "$tmp/fw.safetensors" --dtype f64 >/dev/null || {
  echo "FAIL: forward on the $case golden"; failures=$((failures + 1)); }
# Compare the written loss with the golden one (safetensors parsed with the stdlib).
python3 - "$tmp/fw.safetensors" "${golden}_golden.safetensors" <<'PY' || failures=$((failures + 1))
import json, struct, sys
def read(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        begin, end = header[name]["data_offsets"]
        f.seek(8 + n + begin)
        return struct.unpack("<d", f.read(end - begin))[0]
ours, ref = read(sys.argv[1], "loss"), read(sys.argv[2], "loss")
if abs(ours - ref) > 1e-10 * abs(ref):
    sys.exit(f"FAIL: forward loss {ours} vs golden {ref} ({sys.argv[2]})")
PY
done

# --help of every command: usage on stdout, exit 0, nothing on stderr.
for cmd in "" train prepare-data forward; do
  # shellcheck disable=SC2086
  "$bin" $cmd --help >"$tmp/out" 2>"$tmp/err"
  got=$?
  if [ "$got" -ne 0 ] || ! grep -q "Usage: switchboard" "$tmp/out" || [ -s "$tmp/err" ]; then
    echo "FAIL: 'switchboard $cmd --help' exited $got, stdout/stderr:"; cat "$tmp/out" "$tmp/err"
    failures=$((failures + 1))
  fi
done

expect_fail 2 "unknown command" "$bin" no-such-command
expect_fail 2 "missing required flag --config" "$bin" train
expect_fail 2 "unknown flag --colour" "$bin" train --config x --colour red
expect_fail 2 "nope.textproto" "$bin" train --config "$tmp/nope.textproto"
expect_fail 2 "moe.top_k" "$bin" train --config "$src/configs/tiny.textproto" --set moe.top_k=9
expect_fail 2 "moe.bogus" "$bin" train --config "$src/configs/tiny.textproto" --set moe.bogus=1
[ "$(grep -o -- "--set moe.bogus=1" "$tmp/err" | wc -l)" -eq 1 ] || {
  echo "FAIL: the --set error repeats its prefix:"; cat "$tmp/err"; failures=$((failures + 1)); }
# A config "file" without end (was std::bad_alloc).
expect_fail 2 "config file /dev/zero is larger than" "$bin" train --config /dev/zero
expect_fail 2 "--run_dir is empty" "$bin" train --config "$src/configs/tiny.textproto" --run_dir ""
expect_fail 2 "train.steps" "$bin" train --config "$src/configs/tiny.textproto" --set train.steps=abc
printf 'model { d_model: 64 }\nmoe { top_k: 0 }\n' >"$tmp/bad.textproto"
expect_fail 2 "moe.top_k" "$bin" train --config "$tmp/bad.textproto" --run_dir "$tmp/run"
[ -e "$tmp/run" ] && { echo "FAIL: a rejected config created its run dir"; failures=$((failures + 1)); }
expect_fail 2 "data.train_path" "$bin" train --config "$src/configs/tiny.textproto" \
  --set data.train_path="$tmp/missing" --run_dir "$tmp/run2"
expect_fail 2 "no_such_weights" "$bin" forward --config "$golden.textproto" \
  --weights "$tmp/no_such_weights.safetensors" --tokens "${golden}_golden.safetensors" --out "$tmp/o.safetensors"
head -c 100 "${golden}_weights.safetensors" >"$tmp/truncated.safetensors"
expect_fail 2 "truncated.safetensors" "$bin" forward --config "$golden.textproto" \
  --weights "$tmp/truncated.safetensors" --tokens "${golden}_golden.safetensors" --out "$tmp/o.safetensors"
expect_fail 2 "model.layers" "$bin" forward --config "$src/tests/golden/llama_dense_gqa.textproto" \
  --weights "${golden}_weights.safetensors" --tokens "${golden}_golden.safetensors" --out "$tmp/o.safetensors"
[ -e "$tmp/o.safetensors" ] && { echo "FAIL: a failed forward wrote its output"; failures=$((failures + 1)); }

# Checkpoints: 4 steps in one go == 2 steps, save, `train --resume`, 2 more
# (byte-identical files); resume errors exit 2 naming the file or field.
corpus=$tmp/corpus.txt
for i in $(seq 1 300); do echo "The quick brown fox $((i % 7)) jumps over the lazy dog."; done >"$corpus"
tiny=(--config "$src/configs/tiny.textproto" --set model.vocab_size=257 --set model.d_model=32
      --set model.num_layers=2 --set model.ffn_dim=64 --set model.expert_ffn_dim=32
      --set moe.num_experts=4 --set train.micro_batch_size=2 --set train.seq_len=16
      --set train.steps=4 --set train.log_every=1 --set data.train_path="$corpus"
      --set data.val_path= --set checkpoint.every_steps=2 --set checkpoint.keep_last=0)
"$bin" train "${tiny[@]}" --run_dir "$tmp/ck_a" >/dev/null || { echo "FAIL: train with checkpoints"; failures=$((failures + 1)); }
# Sizes within every field's limit that cannot fit: refused with the estimate
# before allocating (was a FATAL out-of-memory abort, exit 134).
expect_fail 2 "this run needs about" "$bin" train "${tiny[@]}" --set model.d_model=1048576 --run_dir "$tmp/huge"
[ -e "$tmp/huge" ] && { echo "FAIL: a refused run created its run dir"; failures=$((failures + 1)); }
"$bin" train "${tiny[@]}" --set logging.expert_counts=true --set checkpoint.every_steps=0 \
  --run_dir "$tmp/counts" >"$tmp/out" || { echo "FAIL: train with expert counts"; failures=$((failures + 1)); }
# logging.expert_counts prints each MoE block's counts (4 steps x 2 blocks).
[ "$(grep -c "^  moe [01] | max/mean [0-9.]* |\( [0-9]*\)\{4\}$" "$tmp/out")" -eq 8 ] || {
  echo "FAIL: no per-layer expert counts:"; cat "$tmp/out"; failures=$((failures + 1)); }
# Active parameters never exceed the total and do not depend on seq_len.
active_of() { sed -n 's/^model: \([0-9.]*\)M parameters (\([0-9.]*\)M active.*/\1 \2/p' "$tmp/out"; }
read -r total active <<<"$(active_of)"
"$bin" train "${tiny[@]}" --set moe.top_k=4 --set train.seq_len=32 --set train.steps=1 \
  --set checkpoint.every_steps=0 --run_dir "$tmp/all_experts" >"$tmp/out"
read -r total4 active4 <<<"$(active_of)"
# Without logging.expert_counts no count lines (TensorBoard gathers the counts too).
grep -q "max/mean" "$tmp/out" && { echo "FAIL: expert counts printed without logging.expert_counts"; failures=$((failures + 1)); }
python3 -c "import sys; t,a,t4,a4=map(float,sys.argv[1:]); sys.exit(not (a < t and a4 == t4 == t))" \
  "$total" "$active" "$total4" "$active4" || {
  echo "FAIL: active parameters $active of $total (top-2), $active4 of $total4 (top-4 of 4)"
  failures=$((failures + 1)); }
mkdir -p "$tmp/ck_b/checkpoints"
cp -r "$tmp/ck_a/checkpoints/step_2" "$tmp/ck_b/checkpoints/"
echo step_2 >"$tmp/ck_b/checkpoints/latest"
"$bin" train "${tiny[@]}" --run_dir "$tmp/ck_b" --resume >"$tmp/out" 2>&1 || {
  echo "FAIL: train --resume"; cat "$tmp/out"; failures=$((failures + 1)); }
for f in model-00001-of-00001.safetensors optimizer-00001-of-00001.safetensors trainer_state.textproto; do
  cmp -s "$tmp/ck_a/checkpoints/step_4/$f" "$tmp/ck_b/checkpoints/step_4/$f" || {
    echo "FAIL: resumed run's step_4/$f differs from the uninterrupted run's"; failures=$((failures + 1)); }
done
# analyze-routing on that run: JSON counts add up, the four plots are drawn
# (python3-matplotlib, installed by launch/install_deps.sh), bad paths exit 2.
"$bin" analyze-routing --ckpt "$tmp/ck_a" --data "$corpus" --out "$tmp/routing" --batches 3 >"$tmp/out" 2>&1 || {
  echo "FAIL: analyze-routing"; cat "$tmp/out"; failures=$((failures + 1)); }
python3 - "$tmp/routing" <<'PY' || failures=$((failures + 1))
import json, os, sys
d = sys.argv[1]
r = json.load(open(os.path.join(d, "routing.json")))
tokens = 3 * 2 * 16  # batches x micro_batch_size x seq_len
problems = []
if r["tokens"] != tokens or r["step"] != 4 or len(r["layers"]) != 2:
    problems.append(f"tokens {r['tokens']}, step {r['step']}, {len(r['layers'])} layers")
for layer in r["layers"]:
    if sum(layer["routed"]) != tokens * 2 or sum(map(sum, layer["coselection"])) != 2 * tokens:
        problems.append(f"block {layer['block']}: routed {sum(layer['routed'])}")
if not r["top_tokens"] or sum(r["top_tokens"][0]["layers"][0]["first_choice"]) != r["top_tokens"][0]["count"]:
    problems.append("top_tokens")
missing = [p for p in ("expert_load.png", "top_tokens.png", "coselection.png", "layer_agreement.png")
           if not os.path.exists(os.path.join(d, p)) or os.path.getsize(os.path.join(d, p)) < 1000]
if missing:
    problems.append(f"plots missing: {missing}")
if problems:
    sys.exit("FAIL: analyze-routing output: " + "; ".join(problems))
PY
expect_fail 2 "not a checkpoint" "$bin" analyze-routing --ckpt "$tmp/nowhere" --data "$corpus" --out "$tmp/r2"
expect_fail 2 "--data" "$bin" analyze-routing --ckpt "$tmp/ck_a" --data "$tmp/missing.bin" --out "$tmp/r2"
expect_fail 2 "missing required flag --out" "$bin" analyze-routing --ckpt "$tmp/ck_a" --data "$corpus"

expect_fail 2 "pass --resume" "$bin" train "${tiny[@]}" --run_dir "$tmp/ck_a"
# A flipped bit in step_4's weights (headers intact): the resume names the
# file and tensor and the newest checkpoint that verifies, which resumes to
# a byte-identical step_4.
cp -r "$tmp/ck_a" "$tmp/ck_c"
python3 - "$tmp/ck_c/checkpoints/step_4/model-00001-of-00001.safetensors" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-7] ^= 0x40
open(p, "wb").write(b)
PY
expect_fail 2 "checksum mismatch" "$bin" train "${tiny[@]}" --set train.steps=6 --run_dir "$tmp/ck_c" --resume
grep -qF -- "model-00001-of-00001.safetensors: tensor '" "$tmp/err" &&
  grep -qF -- "resume from it with --resume_from step_2" "$tmp/err" || {
  echo "FAIL: the corrupt checkpoint's error lacks the tensor or the fallback:"; cat "$tmp/err"
  failures=$((failures + 1)); }
"$bin" train "${tiny[@]}" --run_dir "$tmp/ck_c" --resume_from step_2 >"$tmp/out" 2>&1 || {
  echo "FAIL: train --resume_from step_2"; cat "$tmp/out"; failures=$((failures + 1)); }
cmp -s "$tmp/ck_a/checkpoints/step_4/model-00001-of-00001.safetensors" \
  "$tmp/ck_c/checkpoints/step_4/model-00001-of-00001.safetensors" || {
  echo "FAIL: --resume_from step_2 did not reproduce step_4"; failures=$((failures + 1)); }
expect_fail 2 "--resume_from step_9" "$bin" train "${tiny[@]}" --run_dir "$tmp/ck_c" --resume_from step_9

# A fresh run refuses another run's metrics.jsonl unless --overwrite.
mkdir -p "$tmp/m" && echo '{"step": 1}' >"$tmp/m/metrics.jsonl"
expect_fail 2 "metrics.jsonl exists" "$bin" train "${tiny[@]}" --run_dir "$tmp/m"
"$bin" train "${tiny[@]}" --set checkpoint.every_steps=0 --run_dir "$tmp/m" --overwrite >/dev/null || {
  echo "FAIL: --overwrite"; failures=$((failures + 1)); }
[ "$(wc -l <"$tmp/m/metrics.jsonl")" -eq 4 ] || { echo "FAIL: --overwrite kept old records"; failures=$((failures + 1)); }
# One run per directory: a second run on a busy run_dir is refused (exit 2)
# naming the first; SIGTERM stops the first after its step with a checkpoint
# (exit 3), and --resume continues it.
"$bin" train "${tiny[@]}" --set train.steps=100000 --set train.log_every=1000 \
  --set checkpoint.every_steps=0 --run_dir "$tmp/busy" >"$tmp/busy.out" 2>&1 &
busy=$!
for _ in $(seq 1 100); do [ -s "$tmp/busy/.lock" ] && break; sleep 0.1; done
expect_fail 2 "is in use by another run (pid $busy" "$bin" train "${tiny[@]}" --run_dir "$tmp/busy" --overwrite
for _ in $(seq 1 100); do grep -q "^data:" "$tmp/busy.out" && break; sleep 0.1; done
sleep 0.5
kill -TERM "$busy"
wait "$busy"
got=$?
if [ "$got" -ne 3 ] || ! grep -q "stopped by SIGTERM after step .*: saved checkpoint" "$tmp/busy.out" ||
   ! grep -q -- "--run_dir $tmp/busy --resume$" "$tmp/busy.out"; then
  echo "FAIL: SIGTERM: exit $got (want 3):"; cat "$tmp/busy.out"; failures=$((failures + 1))
fi
"$bin" train "${tiny[@]}" --set train.steps=100000 --run_dir "$tmp/busy" --resume >"$tmp/out" 2>&1 &
busy=$!
for _ in $(seq 1 100); do grep -q "^resumed from" "$tmp/out" && break; sleep 0.1; done
kill -INT "$busy"; wait "$busy"
[ "$?" -eq 3 ] || { echo "FAIL: SIGINT after --resume:"; cat "$tmp/out"; failures=$((failures + 1)); }

# Data errors at start, before any training step, with nothing written.
printf 'hi' >"$tmp/short.txt"
expect_fail 2 "data.val_path: " "$bin" train "${tiny[@]}" --set data.val_path="$tmp/short.txt" --run_dir "$tmp/d1"
mkdir -p "$tmp/ds/train" && printf 'x' >"$tmp/ds/tokenizer.model" && echo '{}' >"$tmp/ds/info.json"
expect_fail 2 "is a file of the prepared dataset $tmp/ds" "$bin" train "${tiny[@]}" \
  --set data.train_path="$tmp/ds/info.json" --run_dir "$tmp/d2"
printf 'text\0binary' >"$tmp/binary.dat"
expect_fail 2 "is not a text file (NUL byte at offset 4)" "$bin" train "${tiny[@]}" \
  --set data.train_path="$tmp/binary.dat" --run_dir "$tmp/d3"
for d in d1 d2 d3; do
  [ -e "$tmp/$d" ] && { echo "FAIL: a refused start created $d"; failures=$((failures + 1)); }
done
expect_fail 2 "no checkpoint to resume from" "$bin" train "${tiny[@]}" --run_dir "$tmp/ck_none" --resume
[ -e "$tmp/ck_none" ] && { echo "FAIL: a failed --resume created its run dir"; failures=$((failures + 1)); }
expect_fail 2 "model.d_model = 32 in the checkpoint, 64" "$bin" train "${tiny[@]}" --set model.d_model=64 \
  --run_dir "$tmp/ck_a" --resume
expect_fail 2 "optimizer.name" "$bin" train "${tiny[@]}" --set optimizer.name=ADAFACTOR --run_dir "$tmp/ck_a" --resume
expect_fail 2 "moe.num_shared_experts = 0 in the checkpoint, 1" "$bin" train "${tiny[@]}" \
  --set moe.num_shared_experts=1 --run_dir "$tmp/ck_a" --resume
expect_fail 2 "selection bias (moe.aux_free_bias_update_rate > 0) = off in the checkpoint, on" \
  "$bin" train "${tiny[@]}" --set moe.aux_free_bias_update_rate=0.001 --run_dir "$tmp/ck_a" --resume
head -c 300 "$tmp/ck_b/checkpoints/step_4/model-00001-of-00001.safetensors" >"$tmp/cut"
mv "$tmp/cut" "$tmp/ck_b/checkpoints/step_4/model-00001-of-00001.safetensors"
expect_fail 2 "model-00001-of-00001.safetensors" "$bin" train "${tiny[@]}" --set train.steps=6 \
  --run_dir "$tmp/ck_b" --resume
echo step_77 >"$tmp/ck_b/checkpoints/latest"
expect_fail 2 "names step_77" "$bin" train "${tiny[@]}" --run_dir "$tmp/ck_b" --resume
expect_fail 1 "steps in a row had a non-finite loss" "$bin" train "${tiny[@]}" --set optimizer.lr=1e30 \
  --set checkpoint.max_nonfinite_steps=2 --run_dir "$tmp/ck_nan"

# Every routing variant trains from the command line (docs/routing_variants.md)
# and logs the step's load imbalance (and the selection bias when it has one).
variant=0
for sets in "moe.noisy_gating=true moe.balance_loss=CV_IMPORTANCE_LOAD" \
            "moe.second_expert_policy=RANDOM" "moe.batch_prioritized_routing=true" \
            "moe.routing=EXPERT_CHOICE" "moe.num_shared_experts=2 model.expert_ffn_dim=16" \
            "moe.aux_free_bias_update_rate=0.001" "moe.expert_dropout=0.25"; do
  variant=$((variant + 1))
  args=()
  for s in $sets; do args+=(--set "$s"); done
  "$bin" train "${tiny[@]}" "${args[@]}" --set checkpoint.every_steps=0 \
    --run_dir "$tmp/variant_$variant" >"$tmp/out" 2>&1 || {
    echo "FAIL: train with $sets"; cat "$tmp/out"; failures=$((failures + 1)); continue; }
  grep -q '"load_imbalance": ' "$tmp/variant_$variant/metrics.jsonl" || {
    echo "FAIL: $sets: no load_imbalance in metrics.jsonl"; failures=$((failures + 1)); }
done
grep -q '"selection_bias_abs_max": 0.00' "$tmp/variant_6/metrics.jsonl" || {
  echo "FAIL: the aux-free run logs no selection_bias_abs_max"; failures=$((failures + 1)); }
expect_fail 2 "moe.second_expert_policy = RANDOM needs moe.top_k = 2" "$bin" train "${tiny[@]}" \
  --set moe.second_expert_policy=RANDOM --set moe.top_k=1 --run_dir "$tmp/variant_bad"

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI checks failed"
  exit 1
fi
echo "all CLI checks passed"

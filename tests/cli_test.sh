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

golden=$src/tests/golden/mixtral_top2_dropless
"$bin" forward --config "$golden.textproto" --weights "${golden}_weights.safetensors" \
  --tokens "${golden}_golden.safetensors" --out "$tmp/fw.safetensors" --dtype f64 >/dev/null || {
  echo "FAIL: forward on the mixtral golden"; failures=$((failures + 1)); }
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
    sys.exit(f"FAIL: forward loss {ours} vs golden {ref}")
PY

expect_fail 2 "unknown command" "$bin" no-such-command
expect_fail 2 "missing required flag --config" "$bin" train
expect_fail 2 "unknown flag --colour" "$bin" train --config x --colour red
expect_fail 2 "nope.textproto" "$bin" train --config "$tmp/nope.textproto"
expect_fail 2 "moe.top_k" "$bin" train --config "$src/configs/tiny.textproto" --set moe.top_k=9
expect_fail 2 "moe.bogus" "$bin" train --config "$src/configs/tiny.textproto" --set moe.bogus=1
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
expect_fail 2 "no checkpoint to resume from" "$bin" train "${tiny[@]}" --run_dir "$tmp/ck_none" --resume
[ -e "$tmp/ck_none" ] && { echo "FAIL: a failed --resume created its run dir"; failures=$((failures + 1)); }
expect_fail 2 "model.d_model = 32 in the checkpoint, 64" "$bin" train "${tiny[@]}" --set model.d_model=64 \
  --run_dir "$tmp/ck_a" --resume
expect_fail 2 "optimizer.name" "$bin" train "${tiny[@]}" --set optimizer.name=ADAFACTOR --run_dir "$tmp/ck_a" --resume
head -c 300 "$tmp/ck_b/checkpoints/step_4/model-00001-of-00001.safetensors" >"$tmp/cut"
mv "$tmp/cut" "$tmp/ck_b/checkpoints/step_4/model-00001-of-00001.safetensors"
expect_fail 2 "model-00001-of-00001.safetensors" "$bin" train "${tiny[@]}" --set train.steps=6 \
  --run_dir "$tmp/ck_b" --resume
echo step_77 >"$tmp/ck_b/checkpoints/latest"
expect_fail 2 "names step_77" "$bin" train "${tiny[@]}" --run_dir "$tmp/ck_b" --resume
expect_fail 1 "steps in a row had a non-finite loss" "$bin" train "${tiny[@]}" --set optimizer.lr=1e30 \
  --set checkpoint.max_nonfinite_steps=2 --run_dir "$tmp/ck_nan"

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI checks failed"
  exit 1
fi
echo "all CLI checks passed"

#!/usr/bin/env bash
# The experiment suite's driver (benchmarks/experiments.py) end to end in its
# --smoke mode (every run of the full plan, 8 steps of 4 x 32 tokens, on a
# 400-piece tokenization of the Python tutorial): interrupted with SIGTERM
# after its first finished run and started again, it completes; every planned
# run has finite losses and its final evaluation; the trainer's FLOP/s agrees
# with the driver's FLOPs formula; the CSV/JSON/PNG results and the doc's
# generated sections are written; a run killed after a checkpoint resumes
# and ends as the uninterrupted one; a finished suite trains nothing.
# ~1 minute on 2 cores. The --quick mode (~10 min) is the documented command
# of docs/experiments.md, not part of ctest.
#   experiments_test.sh <switchboard binary> <source dir>
set -uo pipefail
SB="${1:?usage: $0 path/to/switchboard source_dir}"
SRC="${2:?usage: $0 path/to/switchboard source_dir}"
T="$(mktemp -d "${TMPDIR:-/tmp}/sb_experiments.XXXXXX")"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL $*"; exit 1; }

mkdir -p "$T/corpus"
cp /usr/share/doc/python3.11/html/_sources/tutorial/*.rst.txt "$T/corpus/" || fail "no python3.11-doc"
"$SB" prepare-data --input "$T/corpus" --out "$T/ds" --vocab_size 400 --val_fraction 0.1 --quiet ||
  fail "prepare-data"
drive=(python3 "$SRC/benchmarks/experiments.py" --smoke --bin "$SB" --data "$T/ds" --out "$T/out")

# 1. Interrupt: SIGTERM to the driver's process group (the trainers save and
# stop) once one run has finished.
setsid "${drive[@]}" >"$T/log1" 2>&1 &
pid=$!
for _ in $(seq 600); do
  grep -q "done in" "$T/log1" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -TERM -- "-$pid" 2>/dev/null
wait "$pid"
echo "first start, interrupted:"; tail -n 3 "$T/log1"

# 2. Start again: it finishes what is left.
"${drive[@]}" >"$T/log2" 2>&1 || { cat "$T/log2"; fail "second start exited non-zero"; }
echo "second start:"; grep -E "resuming|training finished" "$T/log2"

# 3. Resume: make dense/s1234 look killed just after its step-4 checkpoint
# (what `train --resume` trims: metrics after step 4; no final evaluation);
# the driver resumes it and ends where the uninterrupted run ended.
R="$T/out/runs/dense/s1234"
want=$(tail -n 1 "$R/metrics.jsonl")
rm -rf "$R/checkpoints/step_8" "$R/final_eval.json"
echo step_4 >"$R/checkpoints/latest"
python3 -c "import json,sys; p=sys.argv[1]; l=[x for x in open(p) if json.loads(x)['step']<=4]; open(p,'w').writelines(l)" "$R/metrics.jsonl"
"${drive[@]}" >"$T/log2b" 2>&1 || { cat "$T/log2b"; fail "start after the simulated kill exited non-zero"; }
grep -q "dense/s1234: resuming" "$T/log2b" || { cat "$T/log2b"; fail "dense/s1234 not resumed"; }
python3 - "$want" "$(tail -n 1 "$R/metrics.jsonl")" <<'PY' || fail "resumed run differs"
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:])
for k in ("step", "loss", "val_loss"):
    if abs(a[k] - b[k]) > 1e-6 * abs(a[k]):
        sys.exit(f"{k}: uninterrupted {a[k]}, resumed {b[k]}")
print(f"ok: resumed run ends at step {b['step']} with val loss {b['val_loss']} (uninterrupted {a['val_loss']})")
PY

# 4. Everything there and sane.
python3 - "$T/out" <<'PY' || fail "outputs"
import csv, json, math, os, re, sys
out = sys.argv[1]
plan = json.load(open(os.path.join(out, "plan.json")))
errors = []
for run in plan["runs"]:
    rd = os.path.join(out, "runs", run["name"])
    recs = [json.loads(l) for l in open(os.path.join(rd, "metrics.jsonl"))]
    if recs[-1]["step"] != run["steps"]:
        errors.append(f"{run['name']}: last step {recs[-1]['step']} != {run['steps']}")
    vals = [r["val_loss"] for r in recs if "val_loss" in r]
    final = json.load(open(os.path.join(rd, "final_eval.json")))["loss"]
    if not vals or not all(math.isfinite(v) and 0 < v < 20 for v in vals + [final]):
        errors.append(f"{run['name']}: val losses {vals}, final {final}")
    # The trainer's GFLOP/s over tok/s is its TrainFlopsPerToken: the driver's formula must match.
    lines = re.findall(r"\| (\d+) tok/s \| ([\d.]+) GFLOP/s", open(rd + ".log").read())
    tok, gflops = max((int(a), float(b)) for a, b in lines)
    if abs(gflops * 1e9 / tok - run["fpt"]) > 0.02 * run["fpt"]:
        errors.append(f"{run['name']}: trainer {gflops * 1e9 / tok:.4g} FLOP/token, driver {run['fpt']:.4g}")
res = os.path.join(out, "results")
rows = list(csv.DictReader(open(os.path.join(res, "runs.csv"))))
if sorted(r["name"] for r in rows) != sorted(r["name"] for r in plan["runs"]):
    errors.append("runs.csv does not list every planned run")
summary = json.load(open(os.path.join(res, "summary.json")))
if summary["missing_runs"]:
    errors.append(f"missing runs {summary['missing_runs']}")
for arm, a in summary["arms"].items():
    m, s, n = a["final_val_full"]
    if n != len(plan["settings"]["seeds"]) or not (math.isfinite(m) and math.isfinite(s)):
        errors.append(f"{arm}: final_val_full {a['final_val_full']}")
jump = summary["set_b"]["jump"][0]
if jump is None or abs(jump) > 1e-3:  # renormalised, dropless, identical experts: the dense function
    errors.append(f"upcycling jump {jump}, want ~0")
for png in ("set_a_tokens", "set_a_flops", "set_b", "set_c_bars", "set_c_zloss"):
    with open(os.path.join(res, png + ".png"), "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            errors.append(f"{png}.png is not a PNG")
doc = open(os.path.join(out, "experiments.md")).read()
for name in ("setup", "set_a", "set_b", "set_c"):
    body = doc.split(f"<!-- generated:{name} -->")[1].split(f"<!-- /generated:{name} -->")[0]
    if len(body.strip().splitlines()) < 3 or "no plot" in body or "nan" in body:
        errors.append(f"doc section {name}: {body[:200]!r}")
print("\n".join(errors) or f"ok: {len(plan['runs'])} runs, results and doc")
sys.exit(1 if errors else 0)
PY

# 5. A finished suite trains nothing when started again.
"${drive[@]}" >"$T/log3" 2>&1 || { cat "$T/log3"; fail "third start exited non-zero"; }
grep -q "training [0-9]* steps\|resuming" "$T/log3" && { cat "$T/log3"; fail "third start trained again"; }
echo "ok: a finished suite is skipped"

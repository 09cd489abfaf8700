#!/usr/bin/env python3
"""Reads a training run's TensorBoard event files with TensorBoard's own
reader and checks them against the run's metrics.jsonl: the independent
check of launch/tensorboard/ on real output (docs/cli.md, "TensorBoard").

  /opt/sb-latest-venv/bin/python tests/reference/check_tensorboard_run.py RUN_DIR

Uses tensorboard.backend.event_processing.event_accumulator.EventAccumulator
(CRC-checked reads, SessionLog.START purging as on a resumed run, the
histogram conversion). Checks: every scalar tag the trainer writes is there;
for every step of metrics.jsonl (which a resume trims), train/loss,
train/lr, train/grad_norm, perf/tokens_per_s, train/dropped_fraction and
eval/val_loss equal the JSON values to float32 precision, and no other
step is left (resumed runs: the steps an earlier file logged past the
checkpoint are purged); where metrics.jsonl has tokens_per_expert_moeN, the
histogram experts/moeN/expert_load holds those counts by expert.
Exits non-zero with the differences; prints a summary otherwise.
"""
import json
import math
import sys

from tensorboard.backend.event_processing import event_accumulator

SCALARS = ["train/loss", "train/aux_loss", "train/z_loss", "train/lr", "train/grad_norm",
           "train/dropped_fraction", "train/router_entropy", "perf/tokens_per_s", "perf/model_tflops",
           "perf/mfu", "perf/step_s", "perf/compute_s", "perf/dispatch_s", "perf/combine_s",
           "perf/grad_sync_s", "perf/optimizer_s"]
JSON_KEY = {"train/loss": "loss", "train/lr": "lr", "train/grad_norm": "grad_norm",
            "perf/tokens_per_s": "tokens_per_s", "train/dropped_fraction": "dropped_frac",
            "eval/val_loss": "val_loss", "perf/mfu": "mfu"}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run_dir = sys.argv[1]
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    records = {}
    with open(f"{run_dir}/metrics.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if not r.get("skipped"):
                records[r["step"]] = r
    failures = [f"missing scalar tag {t}" for t in SCALARS if t not in tags["scalars"]]
    for tag, key in JSON_KEY.items():
        if tag not in tags["scalars"]:
            continue
        events = {e.step: e.value for e in acc.Scalars(tag)}
        want = {s: r[key] for s, r in records.items() if r.get(key) is not None}
        if set(events) != set(want):
            failures.append(f"{tag}: steps {sorted(events)} in TensorBoard, {sorted(want)} in metrics.jsonl")
        for step, value in want.items():
            got = events.get(step)
            if got is None or not math.isclose(got, value, rel_tol=2e-7 * 8, abs_tol=1e-30):
                failures.append(f"{tag} step {step}: TensorBoard {got}, metrics.jsonl {value}")
    histograms = 0
    for step, r in records.items():
        for key, counts in r.items():
            if not key.startswith("tokens_per_expert_moe"):
                continue
            tag = f"experts/moe{key[len('tokens_per_expert_moe'):]}/expert_load"
            by_step = {e.step: e.histogram_value for e in acc.Histograms(tag)} if tag in tags["histograms"] else {}
            h = by_step.get(step)
            if h is None:
                failures.append(f"{tag} step {step}: no histogram")
                continue
            histograms += 1
            # Buckets left to right: expert i spans [i - 0.5, i + 0.5).
            got = [int(c) for c in h.bucket]
            if got != counts or h.num != sum(counts):
                failures.append(f"{tag} step {step}: buckets {got}, metrics.jsonl {counts}")
    if failures:
        sys.exit("check_tensorboard_run: event files and metrics.jsonl disagree:\n  " + "\n  ".join(failures))
    print(f"{run_dir}: TensorBoard reads {len(tags['scalars'])} scalar tags, {len(tags['histograms'])} "
          f"histogram tags; {len(records)} logged steps match metrics.jsonl "
          f"({', '.join(JSON_KEY)}); {histograms} expert-load histograms match")


if __name__ == "__main__":
    main()

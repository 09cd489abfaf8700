#!/usr/bin/env python3
"""Tabulates benchmarks/routing_variants.sh: one row per run directory.

    python3 benchmarks/routing_variants_table.py runs/routing_variants --steps 400 \
        --json benchmarks/results/routing_variants.json --md benchmarks/results/routing_variants.md

Per variant, from its metrics.jsonl (records are means over log_every steps):
final validation loss; training loss, load imbalance (max_e load / mean_e
load of the step's routed choices, mean over MoE layers; 1 = balanced),
dropped fraction (token choice: choices over capacity; expert choice: tokens
no expert took) and router entropy, each averaged over the records of the
last quarter of training. Wall time is kept in the JSON only: on a shared
machine it measures the neighbours (benchmarks/model_step_bench times the
variants' steps instead). Standard library only.
"""
import argparse
import json
import os
import sys


def summarise(run_dir: str, steps: int) -> dict:
    records = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            records.append(json.loads(line))
    if not records or records[-1]["step"] != steps:
        sys.exit(f"{run_dir}: did not reach step {steps}")
    tail = [r for r in records if r["step"] > 0.75 * steps and "loss" in r and r["loss"] is not None]

    def mean(key):
        vals = [r[key] for r in tail if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    last = records[-1]
    out = {
        "val_loss": last.get("val_loss"),
        "train_loss_last_quarter": mean("loss"),
        "load_imbalance_last_quarter": mean("load_imbalance"),
        "dropped_frac_last_quarter": mean("dropped_frac"),
        "router_entropy_last_quarter": mean("router_entropy"),
        "tokens_per_s": None,
        "elapsed_s": last.get("elapsed_s"),
    }
    if last.get("selection_bias_abs_max") is not None:
        out["selection_bias_abs_max_final"] = last["selection_bias_abs_max"]
    with open(os.path.join(run_dir, "config.textproto")) as f:
        out["config"] = run_dir
        text = f.read()
    tokens = steps * _field(text, "micro_batch_size") * _field(text, "seq_len")
    if last.get("elapsed_s"):
        out["tokens_per_s"] = tokens / last["elapsed_s"]
    return out


def _field(text: str, name: str) -> int:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(name + ":"):
            return int(line.split(":")[1])
    sys.exit(f"config has no {name}")


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", help="directory with one run directory per variant")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args()
    rows = {}
    for name in sorted(os.listdir(args.runs)):
        path = os.path.join(args.runs, name)
        if os.path.isfile(os.path.join(path, "metrics.jsonl")):
            rows[name] = summarise(path, args.steps)
    order = ["baseline"] + sorted((n for n in rows if n.startswith("baseline_")), key=lambda n: n) + \
        [n for n in rows if not n.startswith("baseline")]
    order = [n for n in order if n in rows]
    base = rows.get("baseline", {}).get("val_loss")
    lines = ["| variant | val loss | vs baseline | train loss | load max/mean | dropped | router entropy |",
             "|---|---|---|---|---|---|---|"]
    for n in order:
        r = rows[n]
        delta = None if base is None or r["val_loss"] is None else r["val_loss"] - base
        lines.append(f"| {n} | {fmt(r['val_loss'], '.4f')} | {fmt(delta, '+.4f')} | "
                     f"{fmt(r['train_loss_last_quarter'], '.4f')} | "
                     f"{fmt(r['load_imbalance_last_quarter'], '.3f')} | "
                     f"{fmt(r['dropped_frac_last_quarter'] and 100 * r['dropped_frac_last_quarter'], '.2f')}% | "
                     f"{fmt(r['router_entropy_last_quarter'], '.3f')} |")
    seeds = [rows[n]["val_loss"] for n in order
             if (n == "baseline" or n.startswith("baseline_seed")) and rows[n]["val_loss"] is not None]
    if len(seeds) > 1:
        mean = sum(seeds) / len(seeds)
        sd = (sum((v - mean) ** 2 for v in seeds) / (len(seeds) - 1)) ** 0.5
        lines.append("")
        lines.append(f"Baseline over {len(seeds)} seeds: val loss {mean:.4f} +- {sd:.4f} (sample sd), "
                     f"range {min(seeds):.4f} - {max(seeds):.4f}; every variant ran with seed 1234 "
                     "(the `baseline` row's) only.")
    table = "\n".join(lines)
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(f"<!-- benchmarks/routing_variants.sh {args.steps}: written by "
                    "benchmarks/routing_variants_table.py -->\n" + table + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": args.steps, "variants": rows}, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Results of benchmarks/experiments.py: reads OUT/plan.json and the run
directories, writes RESULTS/{runs.csv, curves.csv, summary.json, *.png} and
replaces the generated sections of the markdown doc (between
`<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; a doc that does not
exist is written from a skeleton with every section).

  python3 benchmarks/experiments_report.py OUT RESULTS DOC

Definitions (docs/experiments.md says them too):
  val loss (curves)  the trainer's periodic evaluation: train.eval_batches
                     batches of windows drawn with train.seed + 1, so the same
                     windows for every arm of one seed;
  final val loss     `switchboard eval` of the final weights on the whole
                     validation split (the same windows for every run);
  FLOPs              6 x active parameters per token (LM head included, the
                     embedding lookup free) + 12 x layers x d_model x seq_len
                     for attention: the trainer's TrainFlopsPerToken;
  spike              a logged training loss (the mean over train.log_every
                     steps) more than SPIKE nats above the lowest one logged
                     before it, after warmup;
  diverged           a skipped (non-finite) step, or a final training loss
                     above the one at the end of warmup.
"""
import csv
import json
import math
import os
import platform
import statistics
import sys
import time

SPIKE = 0.5
SECTIONS = ["setup", "set_a", "set_b", "set_c"]


def mean_std(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def fmt(ms, digits=3):
    m, s, n = ms
    if m is None:
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def pfmt(ms):
    """A paired difference with its t statistic (mean / (std / sqrt(n)); n - 1 degrees of freedom)."""
    m, sd, n = ms
    if m is None or n < 2 or not sd:
        return fmt(ms, 4)
    return f"{fmt(ms, 4)} (t {m / (sd / math.sqrt(n)):.1f})"


def xfmt(ms):
    return "not reached" if ms[0] is None else fmt(ms, 2) + "x"


def read_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut off by a kill; train --resume trims it
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def layer_load(eval_json):
    """(CV of routed choices over experts, max/mean, dropped fraction), averaged over MoE layers."""
    layers = (eval_json or {}).get("layers") or []
    if not layers:
        return None, None, None
    cvs, mx, drop = [], [], []
    for layer in layers:
        routed = layer["routed"]
        mu = statistics.fmean(routed)
        cvs.append(statistics.pstdev(routed) / mu if mu else 0.0)
        mx.append(max(routed) / mu if mu else 0.0)
        drop.append(layer["dropped_fraction"])
    return statistics.fmean(cvs), statistics.fmean(mx), statistics.fmean(drop)


def interp_reach(points, target):
    """The first x where the piecewise-linear curve [(x, y)] falls to target, or None."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y0 <= target:
            return x0
        if y1 <= target:
            return x0 + (x1 - x0) * (y0 - target) / (y0 - y1)
    return points[-1][0] if points and points[-1][1] <= target else None


def load_run(out, run, settings):
    rd = os.path.join(out, "runs", run["name"])
    recs = read_jsonl(os.path.join(rd, "metrics.jsonl"))
    final = read_json(os.path.join(rd, "final_eval.json"))
    walls = []
    if os.path.exists(rd + ".wall"):
        walls = [float(x) for x in open(rd + ".wall").read().split()]
    tps = run["tokens_per_step"]
    # elapsed_s restarts at 0 on --resume: stitch the segments together.
    offset, last_elapsed, curve, train_losses = 0.0, 0.0, [], []
    skipped = 0
    for r in recs:
        if r.get("skipped"):
            skipped += 1
            continue
        e = r.get("elapsed_s", 0.0)
        if e < last_elapsed:
            offset += last_elapsed
        last_elapsed = e
        wall = offset + e
        if r.get("loss") is not None:
            train_losses.append((r["step"], r["loss"]))
        if r.get("val_loss") is not None:
            curve.append(dict(step=r["step"], tokens=r["step"] * tps, flops=r["step"] * tps * run["fpt"],
                              wall=wall, val=r["val_loss"]))
    done = bool(recs) and recs[-1].get("step") == run["steps"] and final is not None
    warm = settings["cont_warmup"] if run["init"] else settings["warmup"]
    after = [(s, l) for s, l in train_losses if s > warm]
    spikes, lowest = 0, math.inf
    for _, l in after:
        if not math.isfinite(l) or l > lowest + SPIKE:
            spikes += 1
        lowest = min(lowest, l)
    at_warm = [l for s, l in train_losses if s <= warm]
    diverged = skipped > 0 or bool(after and at_warm and not (after[-1][1] <= at_warm[-1]))
    tok_s = [r["tokens_per_s"] for r in recs if r.get("tokens_per_s")]
    drops = [r.get("dropped_frac", 0.0) for r in recs if "dropped_frac" in r]
    cv, max_mean, eval_drop = layer_load(final)
    return dict(
        name=run["name"], set=run["set"], arm=run["arm"], seed=run["seed"], steps=run["steps"],
        done=done, curve=curve, train_losses=train_losses,
        final_val=curve[-1]["val"] if curve else None,
        final_val_full=final["loss"] if final else None,
        tokens=run["steps"] * tps, flops=run["steps"] * tps * run["fpt"], fpt=run["fpt"],
        wall=sum(walls) if walls else None, elapsed=curve[-1]["wall"] if curve else None,
        tokens_per_s=statistics.median(tok_s) if tok_s else None,
        train_drop=statistics.fmean(drops[len(drops) // 2:]) if drops else None,
        load_cv=cv, load_max_mean=max_mean, eval_drop=eval_drop,
        spikes=spikes, diverged=diverged, skipped=skipped)


def aggregate_curves(rows):
    """Mean and std over seeds at each evaluated step (steps every seed has)."""
    by_step = {}
    for r in rows:
        for p in r["curve"]:
            by_step.setdefault(p["step"], []).append(p)
    out = []
    for step in sorted(by_step):
        ps = by_step[step]
        if len(ps) != len(rows):
            continue
        m, s, n = mean_std([p["val"] for p in ps])
        out.append(dict(step=step, tokens=ps[0]["tokens"], flops=ps[0]["flops"],
                        wall=statistics.fmean(p["wall"] for p in ps), val=m, std=s, n=n))
    return out


def summarize(out, plan):
    settings = plan["settings"]
    rows = [load_run(out, run, settings) for run in plan["runs"]]
    by_arm = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    arms = {}
    for arm, rs in by_arm.items():
        arms[arm] = dict(
            set=rs[0]["set"], seeds=len(rs), done=sum(r["done"] for r in rs),
            final_val=mean_std([r["final_val"] for r in rs]),
            final_val_full=mean_std([r["final_val_full"] for r in rs]),
            tokens=rs[0]["tokens"], flops=rs[0]["flops"], fpt=rs[0]["fpt"],
            wall=mean_std([r["wall"] for r in rs]), tokens_per_s=mean_std([r["tokens_per_s"] for r in rs]),
            train_drop=mean_std([r["train_drop"] for r in rs]), eval_drop=mean_std([r["eval_drop"] for r in rs]),
            load_cv=mean_std([r["load_cv"] for r in rs]), load_max_mean=mean_std([r["load_max_mean"] for r in rs]),
            spikes=sum(r["spikes"] for r in rs), spiking_runs=sum(r["spikes"] > 0 for r in rs),
            diverged_runs=sum(r["diverged"] for r in rs), curve=aggregate_curves(rs))
    return rows, arms


def paired(rows, arm, ref, key="final_val_full"):
    """Per-seed difference arm - ref, mean ± std, and how many seeds have arm < ref."""
    a = {r["seed"]: r[key] for r in rows if r["arm"] == arm and r[key] is not None}
    b = {r["seed"]: r[key] for r in rows if r["arm"] == ref and r[key] is not None}
    d = [a[s] - b[s] for s in sorted(a) if s in b]
    return mean_std(d), sum(x < 0 for x in d), len(d)


def speedups(rows, arm):
    """Per seed: dense tokens (and trainer seconds) / the MoE's to reach dense's final val loss."""
    dense = {r["seed"]: r for r in rows if r["arm"] == "dense" and r["curve"]}
    tok, wall, reached = [], [], 0
    for r in rows:
        if r["arm"] != arm or not r["curve"] or r["seed"] not in dense:
            continue
        d = dense[r["seed"]]
        target = d["curve"][-1]["val"]
        t = interp_reach([(p["tokens"], p["val"]) for p in r["curve"]], target)
        w = interp_reach([(p["wall"], p["val"]) for p in r["curve"]], target)
        if t is None:
            continue
        reached += 1
        tok.append(d["curve"][-1]["tokens"] / t)
        wall.append(d["curve"][-1]["wall"] / w)
    return mean_std(tok), mean_std(wall), reached


def report(out, results, doc):
    """Writes results and the doc's generated sections; returns the summary dict."""
    with open(os.path.join(out, "plan.json")) as f:
        plan = json.load(f)
    rows, arms = summarize(out, plan)
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "plan.json"), "w") as f:  # every run's exact command-line overrides
        json.dump(plan, f, indent=1)
    write_csvs(results, rows)
    up = upcycle_jump(out, rows, plan)
    summary = dict(mode=plan["mode"], settings=plan["settings"], generated=time.strftime("%Y-%m-%d %H:%M"),
                   machine=machine(), suite_wall_s=suite_wall(out), spike_nats=SPIKE,
                   missing_runs=[r["name"] for r in rows if not r["done"]],
                   arms={a: {k: v for k, v in s.items() if k != "curve"} for a, s in arms.items()},
                   curves={a: s["curve"] for a, s in arms.items()},
                   set_a={a: dict(zip(("speedup_tokens", "speedup_wall", "seeds_reached"), speedups(rows, a)),
                                  gap=paired(rows, a, "dense")) for a in arms if arms[a]["set"] == "a" and a != "dense"},
                   set_b=up,
                   set_c={a: dict(vs_base=paired(rows, a, "moe_e8_top2")) for a in arms if arms[a]["set"] == "c"},
                   z_loss=paired(rows, "z1e-3_high_lr", "z0_high_lr"))
    with open(os.path.join(results, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    import experiments_plots  # matplotlib only here: the CSV/JSON need none
    plots = experiments_plots.plot_all(results, rows, arms, plan)
    write_doc(doc, results, summary, arms, rows, plots, plan)
    return summary


def upcycle_jump(out, rows, plan):
    """Set (b): step-0 losses (whole-split eval) and the first logged training losses."""
    res = {}
    for seed in plan["settings"]["seeds"]:
        init = read_json(os.path.join(out, "upcycled", f"s{seed}", "init_eval.json"))
        base = next((r for r in rows if r["arm"] == "dense" and r["seed"] == seed), None)
        first = {r["arm"]: (r["train_losses"][0] if r["train_losses"] else None)
                 for r in rows if r["seed"] == seed and r["set"] == "b"}
        res[seed] = dict(dense_final=base and base["final_val_full"], upcycled_init=init and init["loss"],
                         first_logged=first)
    jumps = [v["upcycled_init"] - v["dense_final"] for v in res.values()
             if v["upcycled_init"] is not None and v["dense_final"] is not None]
    return dict(per_seed=res, jump=mean_std(jumps), final=paired(rows, "continue_upcycled", "continue_dense"))


def write_csvs(results, rows):
    keys = ["name", "set", "arm", "seed", "steps", "done", "tokens", "flops", "fpt", "final_val",
            "final_val_full", "wall", "elapsed", "tokens_per_s", "train_drop", "eval_drop", "load_cv",
            "load_max_mean", "spikes", "diverged", "skipped"]
    with open(os.path.join(results, "runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            w.writerow([r[k] for k in keys])
    with open(os.path.join(results, "curves.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "seed", "step", "tokens", "flops", "wall_s", "val_loss"])
        for r in rows:
            for p in r["curve"]:
                w.writerow([r["arm"], r["seed"], p["step"], p["tokens"], f"{p['flops']:.6g}",
                            f"{p['wall']:.1f}", f"{p['val']:.5f}"])


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(nproc=os.cpu_count(), cpu=model, os=platform.platform(), python=platform.python_version())


def suite_wall(out):
    path = os.path.join(out, "suite_wall.txt")
    if not os.path.exists(path):
        return None
    return sum(float(line.split()[0]) for line in open(path) if line.strip())


# ------------------------------------------------------------------- the doc

def section_text(name, results, doc, summary, arms, rows, plots, plan):
    rel = os.path.relpath(results, os.path.dirname(os.path.abspath(doc)) or ".")
    img = lambda key: f"![{key}]({rel}/{plots[key]})" if key in plots else f"(no plot: {key})"
    s = plan["settings"]
    L = []
    if name == "setup":
        m = summary["machine"]
        wall = summary["suite_wall_s"]
        L.append(f"Mode `{plan['mode']}`: seeds {', '.join(map(str, s['seeds']))}; "
                 f"{s['steps']} steps of {s['batch']} x {s['seq']} tokens for sets (a) and (c); "
                 f"continuations of {s['cont_steps']} steps (upcycled) and the equal-FLOPs count (dense); "
                 f"eval every {s['eval_every']} steps on {s['eval_batches']} batches; final eval on "
                 f"{'the whole validation split' if not s['eval_windows'] else str(s['eval_windows']) + ' windows'}.")
        L.append("")
        L.append(f"Machine: {m['nproc']} x {m['cpu']}, {m['os']}; generated {summary['generated']}. "
                 f"Suite wall time: {wall / 60:.1f} min" if wall else "Suite wall time: not recorded")
        total = sum(r["wall"] or 0 for r in rows)
        L.append(f"(sum of the {len(rows)} runs' training wall times: {total / 60:.1f} min; "
                 f"missing runs: {', '.join(summary['missing_runs']) or 'none'}).")
        L.append("")
        L.append("| arm | set | FLOP/token | tokens | done | final val loss (whole split) | wall s | tok/s |")
        L.append("|---|---|---|---|---|---|---|---|")
        for arm, a in arms.items():
            L.append(f"| {arm} | {a['set']} | {a['fpt'] / 1e6:.2f} M | {a['tokens'] / 1e6:.3f} M | "
                     f"{a['done']}/{a['seeds']} | {fmt(a['final_val_full'])} | {fmt(a['wall'], 0)} | "
                     f"{fmt(a['tokens_per_s'], 0)} |")
    elif name == "set_a":
        L += [img("set_a_tokens"), img("set_a_flops"), ""]
        d = arms.get("dense")
        L.append(f"Dense: final val loss {fmt(d['final_val_full'])} (whole split), "
                 f"{fmt(d['final_val'])} (trainer eval).")
        L.append("")
        L.append("| MoE arm | final val loss | gap to dense (paired) | seeds below dense | "
                 "speed-up to dense's final loss: tokens | trainer wall time | seeds that reach it |")
        L.append("|---|---|---|---|---|---|---|")
        for arm, v in summary["set_a"].items():
            gap, below, n = v["gap"]
            L.append(f"| {arm} | {fmt(arms[arm]['final_val_full'])} | {pfmt(gap)} | {below}/{n} | "
                     f"{xfmt(v['speedup_tokens'])} | {xfmt(v['speedup_wall'])} | "
                     f"{v['seeds_reached']}/{arms[arm]['seeds']} |")
    elif name == "set_b":
        b = summary["set_b"]
        L += [img("set_b"), ""]
        L.append("| seed | dense final (whole split) | upcycled, before any update | jump | "
                 "first logged train loss: dense continued | upcycled |")
        L.append("|---|---|---|---|---|---|")
        for seed, v in b["per_seed"].items():
            fd = v["first_logged"].get("continue_dense")
            fu = v["first_logged"].get("continue_upcycled")
            jump = (v["upcycled_init"] - v["dense_final"]) if None not in (v["upcycled_init"], v["dense_final"]) else None
            L.append(f"| {seed} | {v['dense_final'] or float('nan'):.4f} | {v['upcycled_init'] or float('nan'):.4f} | "
                     f"{jump if jump is not None else float('nan'):+.2e} | "
                     f"{fd[1] if fd else float('nan'):.4f} (step {fd[0] if fd else '-'}) | "
                     f"{fu[1] if fu else float('nan'):.4f} (step {fu[0] if fu else '-'}) |")
        fin, below, n = b["final"]
        cd, cu = arms.get("continue_dense"), arms.get("continue_upcycled")
        L.append("")
        L.append(f"At equal extra training FLOPs ({cu['flops'] / 1e12:.3f} TFLOP upcycled, "
                 f"{cd['flops'] / 1e12:.3f} TFLOP dense): final val loss dense-continued "
                 f"{fmt(cd['final_val_full'])}, upcycled {fmt(cu['final_val_full'])}; upcycled minus dense "
                 f"(paired) {pfmt(fin)}, upcycled lower in {below}/{n} seeds. Extra tokens: dense "
                 f"{cd['tokens'] / 1e6:.3f} M, upcycled {cu['tokens'] / 1e6:.3f} M; trainer wall "
                 f"{fmt(cd['wall'], 0)} s vs {fmt(cu['wall'], 0)} s.")
    elif name == "set_c":
        L += [img("set_c_bars"), img("set_c_zloss"), ""]
        z, below, n = summary["z_loss"]
        L.append(f"At lr {s['high_lr']:g}, z-loss 1e-3 minus z-loss 0 (paired): {pfmt(z)}; "
                 f"lower with z-loss in {below}/{n} seeds.")
        L.append("")
        L.append(f"Spike: a logged training loss (mean of {s['log_every']} steps) more than "
                 f"{summary['spike_nats']} nats above the lowest logged before it, after warmup. "
                 "Diverged: a skipped non-finite step, or a final training loss above the one at the end "
                 "of warmup.")
        L.append("")
        L.append("| arm | final val loss | minus moe_e8_top2 (paired) | seeds better | dropped (train) | "
                 "dropped (eval) | load CV | load max/mean | tok/s | spiking runs | spikes | diverged |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for arm in ["moe_e8_top2"] + list(summary["set_c"]):
            a = arms[arm]
            if arm == "moe_e8_top2":
                diff, better = "(reference)", "-"
            else:
                d, below, n = summary["set_c"][arm]["vs_base"]
                diff, better = pfmt(d), f"{below}/{n}"
            pct = lambda ms: fmt((None if ms[0] is None else 100 * ms[0],
                                  None if ms[1] is None else 100 * ms[1], ms[2]), 1) + "%"
            L.append(f"| {arm} | {fmt(a['final_val_full'])} | {diff} | {better} | {pct(a['train_drop'])} | "
                     f"{pct(a['eval_drop'])} | {fmt(a['load_cv'], 2)} | {fmt(a['load_max_mean'], 2)} | "
                     f"{fmt(a['tokens_per_s'], 0)} | {a['spiking_runs']}/{a['seeds']} | {a['spikes']} | "
                     f"{a['diverged_runs']}/{a['seeds']} |")
    return "\n".join(L)


SKELETON = """# MoE experiments ({mode} mode)

Generated by `python3 benchmarks/experiments.py`; docs/experiments.md explains the design.

## Setup
<!-- generated:setup -->
<!-- /generated:setup -->

## (a) MoE vs dense at equal active FLOPs
<!-- generated:set_a -->
<!-- /generated:set_a -->

## (b) Sparse upcycling vs dense continuation
<!-- generated:set_b -->
<!-- /generated:set_b -->

## (c) Ablations
<!-- generated:set_c -->
<!-- /generated:set_c -->
"""


def write_doc(doc, results, summary, arms, rows, plots, plan):
    text = open(doc).read() if os.path.exists(doc) else SKELETON.format(mode=plan["mode"])
    for name in SECTIONS:
        begin, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise SystemExit(f"{doc}: no '{begin}' ... '{end}' section")
        body = section_text(name, results, doc, summary, arms, rows, plots, plan)
        text = text[:i + len(begin)] + "\n" + body + "\n" + text[j:]
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    report(*sys.argv[1:])

#!/usr/bin/env python3
"""The MoE experiments of docs/experiments.md (issue 14), as one command.

Trains every planned run with `switchboard train` (--set overrides on the
committed configs), one process per run, --jobs runs at a time with one
OpenBLAS/OpenMP thread each; evaluates each finished run on the whole
validation split (`switchboard eval`); then writes the results (CSV, JSON,
PNG) and the generated sections of docs/experiments.md
(benchmarks/experiments_report.py).

  python3 benchmarks/experiments.py                  # the full suite (~1 h on 2 cores)
  python3 benchmarks/experiments.py --quick          # fewer steps and seeds (~10 min)
  python3 benchmarks/experiments.py --smoke --data D # seconds per run (the ctest test)
  python3 benchmarks/experiments.py --report_only    # regenerate results + doc only

Resumable: a run whose metrics.jsonl ends with its last step and whose final
evaluation exists is skipped; an interrupted one continues with `train
--resume` from its latest checkpoint (checkpoint.every_steps); one that died
before its first checkpoint starts again. Stop it with Ctrl-C at any time.

The three sets (what each arm sets on top of its config: plan() below):
  a. dense (configs/dense_small.textproto) vs MoE (configs/tiny.textproto)
     with the same active FLOPs per token: 8/16 experts, top-1 with experts
     as wide as the dense FFN, top-2 with experts half as wide.
  b. the set-(a) dense runs, continued densely or sparse-upcycled
     (export-hf -> upcycle, configs/upcycle_8x_top2.textproto), both for the
     same extra training FLOPs.
  c. ablations around the 8-expert top-2 MoE of set (a).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import experiments_report  # noqa: E402  (same directory)

DENSE_CFG = "configs/dense_small.textproto"
MOE_CFG = "configs/tiny.textproto"
UPCYCLE_CFG = "configs/upcycle_8x_top2.textproto"

# Per mode: seeds (train.seed), steps of set (a)/(c), optimizer steps of the
# upcycled continuation (the dense continuation gets as many FLOPs), batch,
# logging/eval cadence, windows of the final whole-split evaluation (0: all),
# checkpoints (smoke keeps two: its test resumes a run from the first).
MODES = {
    "full": dict(seeds=[1234, 1235, 1236], steps=200, warmup=20, cont_steps=100, cont_warmup=10,
                 batch=16, seq=128, log_every=5, eval_every=20, eval_batches=8, eval_windows=0,
                 ckpt_every=50, high_lr=6e-2),
    "quick": dict(seeds=[1234, 1235], steps=60, warmup=10, cont_steps=30, cont_warmup=5,
                  batch=16, seq=128, log_every=5, eval_every=10, eval_batches=4, eval_windows=128,
                  ckpt_every=20, high_lr=6e-2),
    "smoke": dict(seeds=[1234, 1235], steps=8, warmup=2, cont_steps=4, cont_warmup=1,
                  batch=4, seq=32, log_every=1, eval_every=4, eval_batches=1, eval_windows=8,
                  ckpt_every=4, keep_last=2, high_lr=6e-2),
}

MOE_COMMON = ["moe.capacity_factor_train=1.25", "moe.capacity_factor_eval=1.25",
              "moe.aux_loss_coef=0.01", "moe.z_loss_coef=0.001", "moe.normalize_top_k=false"]


def moe_arm(experts, k):
    # Equal active FFN FLOPs: k experts of width 512 / k = one dense FFN of 512.
    return MOE_COMMON + [f"moe.num_experts={experts}", f"moe.top_k={k}",
                         f"model.expert_ffn_dim={512 // k}"]


BASE = moe_arm(8, 2)  # the ablations' reference (set a's moe_e8_top2)


def with_sets(base, *sets):
    """base with each key of `sets` replaced (later --set wins anyway; this keeps the list readable)."""
    keys = {s.split("=", 1)[0] for s in sets}
    return [s for s in base if s.split("=", 1)[0] not in keys] + list(sets)


def arms(mode):
    """(set, arm, config, overrides, role): every configuration of the suite."""
    m = MODES[mode]
    hi = f"optimizer.lr={m['high_lr']}"
    out = [("a", "dense", DENSE_CFG, [], "dense")]
    for e in (8, 16):
        for k in (1, 2):
            out.append(("a", f"moe_e{e}_top{k}", MOE_CFG, moe_arm(e, k), "train"))
    out += [
        ("b", "continue_dense", DENSE_CFG, [], "continue_dense"),
        ("b", "continue_upcycled", UPCYCLE_CFG, [], "continue_upcycled"),
        ("c", "z0_high_lr", MOE_CFG, with_sets(BASE, hi, "moe.z_loss_coef=0"), "train"),
        ("c", "z1e-3_high_lr", MOE_CFG, with_sets(BASE, hi), "train"),
        ("c", "aux0", MOE_CFG, with_sets(BASE, "moe.aux_loss_coef=0"), "train"),
        ("c", "cf1.0", MOE_CFG, with_sets(BASE, "moe.capacity_factor_train=1.0",
                                          "moe.capacity_factor_eval=1.0"), "train"),
        ("c", "cf2.0", MOE_CFG, with_sets(BASE, "moe.capacity_factor_train=2.0",
                                          "moe.capacity_factor_eval=2.0"), "train"),
        ("c", "dropless", MOE_CFG, with_sets(BASE, "moe.capacity_factor_train=0",
                                             "moe.capacity_factor_eval=0"), "train"),
        ("c", "renorm_top2", MOE_CFG, with_sets(BASE, "moe.normalize_top_k=true"), "train"),
    ]
    return out


def flops_per_token(config_name, sets, seq):
    """The trainer's TrainFlopsPerToken (launch/model_factory.cc) for our configs."""
    model = {"vocab": 8192, "d": 128, "layers": 4, "heads": 4, "kv": 2, "ffn": 512}
    moe = config_name != DENSE_CFG
    ef = 512 if config_name == UPCYCLE_CFG else 256
    experts, k = 8, 2
    for s in sets:
        key, value = s.split("=", 1)
        if key == "model.expert_ffn_dim":
            ef = int(value)
        elif key == "moe.num_experts":
            experts = int(value)
        elif key == "moe.top_k":
            k = int(value)
    d = model["d"]
    hd = d / model["heads"]
    attn = d * hd * (2 * model["heads"] + 2 * model["kv"])
    block = attn + (k * 3 * d * ef + d * experts if moe else 3 * d * model["ffn"])
    active = model["layers"] * block + d * model["vocab"]
    return 6 * active + 12 * model["layers"] * d * seq


def plan(mode, data):
    """Every run: dict(name, set, arm, seed, config, sets, steps, init, fpt)."""
    m = MODES[mode]
    up_fpt = flops_per_token(UPCYCLE_CFG, [], m["seq"])
    dense_fpt = flops_per_token(DENSE_CFG, [], m["seq"])
    runs = []
    for set_name, arm, config, sets, role in arms(mode):
        for seed in m["seeds"]:
            steps, warmup, init = m["steps"], m["warmup"], None
            extra = []
            if role.startswith("continue"):
                # Both continuations: lr 1e-3 (the upcycle config's), cosine from a short warmup.
                warmup, extra = m["cont_warmup"], ["optimizer.lr=0.001"]
                base = f"dense/s{seed}"
                if role == "continue_upcycled":
                    steps, init = m["cont_steps"], ("upcycled", base)
                else:  # the same extra training FLOPs as the upcycled run
                    steps = round(m["cont_steps"] * up_fpt / dense_fpt)
                    init = ("dense", base)
            common = [f"train.steps={steps}", f"train.micro_batch_size={m['batch']}",
                      f"train.seq_len={m['seq']}", f"train.log_every={m['log_every']}",
                      f"train.eval_every={m['eval_every']}", f"train.eval_batches={m['eval_batches']}",
                      f"train.seed={seed}", f"schedule.warmup_steps={warmup}",
                      f"checkpoint.every_steps={m['ckpt_every']}",
                      f"checkpoint.keep_last={m.get('keep_last', 1)}",
                      "logging.expert_counts=true", f"data.train_path={data}/train",
                      f"data.val_path={data}/val"]
            all_sets = common + extra + sets
            runs.append(dict(name=f"{arm}/s{seed}", set=set_name, arm=arm, seed=seed,
                             config=config, sets=all_sets, steps=steps, init=init,
                             fpt=flops_per_token(config, sets, m["seq"]),
                             tokens_per_step=m["batch"] * m["seq"]))
    return runs


# ------------------------------------------------------------------ running

def trained(run_dir, steps):
    recs = experiments_report.read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    return bool(recs) and recs[-1].get("step") == steps and "val_loss" in recs[-1]


def has_checkpoint(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    return os.path.isdir(d) and any(n.startswith("step_") for n in os.listdir(d))


class Runner:
    def __init__(self, args, mode, out):
        self.args, self.mode, self.out = args, mode, out
        self.lock = threading.Lock()
        self.failed = []

    def log(self, msg):
        with self.lock:
            print(f"[experiments {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def sh(self, cmd, log_path):
        """Runs cmd (list) appending to log_path; returns the exit code."""
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        with open(log_path, "a") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def prepare_init(self, run, run_dir):
        """The weights a continuation starts from; None on failure."""
        kind, base = run["init"]
        base_dir = os.path.join(self.out, "runs", base)
        if not trained(base_dir, MODES[self.mode]["steps"]):
            self.log(f"{run['name']}: base run {base} did not finish")
            return None
        if kind == "dense":
            return base_dir
        prep = os.path.join(self.out, "upcycled", f"s{run['seed']}")
        init = os.path.join(prep, "moe-init")
        if os.path.exists(os.path.join(prep, "done")):
            return init
        shutil.rmtree(prep, ignore_errors=True)
        os.makedirs(prep)
        log = os.path.join(prep, "log.txt")
        sb = self.args.bin
        # The walk-through's steps 3 and 5 (launch/upcycle_walkthrough.sh) minus the
        # transformers round trip: the router init N(0, 0.02^2) is keyed by train.seed.
        if (self.sh([sb, "export-hf", "--ckpt", base_dir, "--out", os.path.join(prep, "dense-hf")], log) or
                self.sh([sb, "upcycle", "--from", os.path.join(prep, "dense-hf"), "--config", UPCYCLE_CFG,
                         "--out", init, "--set", f"train.seed={run['seed']}"], log)):
            self.log(f"{run['name']}: export-hf/upcycle failed, see {log}")
            return None
        # The step-0 point of the upcycled run: its validation loss before any update.
        if self.sh(self.eval_cmd(init, os.path.join(prep, "init_eval.json")), log):
            self.log(f"{run['name']}: eval of the upcycled init failed, see {log}")
            return None
        open(os.path.join(prep, "done"), "w").close()
        return init

    def eval_cmd(self, ckpt, json_path):
        """`switchboard eval` on the whole validation split (or its first eval_windows windows)."""
        m = MODES[self.mode]
        cmd = [self.args.bin, "eval", "--ckpt", ckpt, "--data", self.args.data + "/val",
               "--seq_len", str(m["seq"]), "--batch_size", str(m["batch"]), "--no_progress",
               "--json", json_path]
        if m["eval_windows"]:
            cmd += ["--max_windows", str(m["eval_windows"])]
        return cmd

    def final_eval(self, run, run_dir):
        path = os.path.join(run_dir, "final_eval.json")
        if os.path.exists(path):
            return True
        if self.sh(self.eval_cmd(run_dir, path + ".tmp"), run_dir + ".log"):
            return False
        os.replace(path + ".tmp", path)
        return True

    def train(self, run):
        run_dir = os.path.join(self.out, "runs", run["name"])
        log = run_dir + ".log"
        if trained(run_dir, run["steps"]) and self.final_eval(run, run_dir):
            return True
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        cmd = [self.args.bin, "train", "--config", run["config"], "--run_dir", run_dir]
        for s in run["sets"]:
            cmd += ["--set", s]
        if has_checkpoint(run_dir) and not trained(run_dir, run["steps"]):
            cmd.append("--resume")
            self.log(f"{run['name']}: resuming")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            if run["init"]:
                init = self.prepare_init(run, run_dir)
                if init is None:
                    return False
                cmd += ["--init_from", init]
            self.log(f"{run['name']}: training {run['steps']} steps")
        start = time.time()
        code = self.sh(cmd, log)
        wall = time.time() - start
        with open(run_dir + ".wall", "a") as f:  # one line per attempt
            f.write(f"{wall:.1f}\n")
        if code != 0 and not trained(run_dir, run["steps"]):
            self.log(f"{run['name']}: train exited {code} (see {log})")
            return False
        if not self.final_eval(run, run_dir):
            self.log(f"{run['name']}: eval failed (see {log})")
            return False
        if run["arm"] != "dense":  # set (b) starts from the dense checkpoints; the rest are done
            shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
        self.log(f"{run['name']}: done in {wall:.0f} s")
        return True

    def run_all(self, runs):
        """Runs in plan order, --jobs at a time; a continuation waits for its base."""
        pending = list(runs)
        finished, failed = set(), set()
        active = {}

        def worker(run):
            ok = self.train(run)
            with self.lock:
                (finished if ok else failed).add(run["name"])
                del active[run["name"]]

        while pending or active:
            with self.lock:
                ready = None
                for run in pending:
                    base = run["init"][1] if run["init"] else None
                    if base in failed:
                        failed.add(run["name"])
                        pending.remove(run)
                        break
                    if base is None or base in finished:
                        ready = run
                        break
                if ready and len(active) < self.args.jobs:
                    pending.remove(ready)
                    t = threading.Thread(target=worker, args=(ready,))
                    active[ready["name"]] = t
                    t.start()
                    continue
            time.sleep(0.2)
        return sorted(failed)


def need_matplotlib():
    """The plots need Debian's python3-matplotlib (launch/install_deps.sh); a python3 first on
    PATH without it (pyenv, a venv) hands over to /usr/bin/python3."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        system = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(system) and os.path.exists(system):
            os.execv(system, [system] + sys.argv)
        sys.exit("[experiments] matplotlib missing: apt-get install python3-matplotlib "
                 "(bash launch/install_deps.sh)")


def main():
    need_matplotlib()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="2 seeds, 60 steps (~10 min on 2 cores)")
    g.add_argument("--smoke", action="store_true", help="2 seeds, 8 steps of 4 x 32 tokens (the test)")
    p.add_argument("--out", help="run and result directory (default runs/experiments[-quick|-smoke])")
    p.add_argument("--data", default="runs/data/python-docs", help="prepare-data output (train/, val/)")
    p.add_argument("--bin", default="build/launch/switchboard")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--doc", help="markdown to (re)generate (default: docs/experiments.md for the "
                   "full suite, OUT/experiments.md otherwise)")
    p.add_argument("--results", help="CSV/JSON/PNG directory (default: docs/experiments for the "
                   "full suite, OUT/results otherwise)")
    p.add_argument("--report_only", action="store_true", help="no training: results and doc only")
    args = p.parse_args()
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    os.chdir(ROOT)
    out = args.out or f"runs/experiments{'' if mode == 'full' else '-' + mode}"
    results = args.results or ("docs/experiments" if mode == "full" else os.path.join(out, "results"))
    doc = args.doc or ("docs/experiments.md" if mode == "full" else os.path.join(out, "experiments.md"))
    args.bin = os.path.abspath(args.bin)
    args.data = os.path.abspath(args.data)
    out = os.path.abspath(out)
    runs = plan(mode, args.data)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "plan.json"), "w") as f:
        json.dump(dict(mode=mode, settings=MODES[mode], runs=runs), f, indent=1)
    failed = []
    if not args.report_only:
        for need in (args.bin, os.path.join(args.data, "train"), os.path.join(args.data, "val")):
            if not os.path.exists(need):
                sys.exit(f"[experiments] {need} missing: bash launch/build.sh; "
                         "bash launch/prepare_default_data.sh")
        start = time.time()
        runner = Runner(args, mode, out)
        runner.log(f"{mode}: {len(runs)} runs into {out}, {args.jobs} at a time")
        failed = runner.run_all(runs)
        runner.log(f"training finished in {time.time() - start:.0f} s; failed: {failed or 'none'}")
        with open(os.path.join(out, "suite_wall.txt"), "a") as f:
            f.write(f"{time.time() - start:.1f} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    summary = experiments_report.report(out, results, doc)
    missing = summary["missing_runs"]
    if failed or missing:
        print(f"[experiments] incomplete: failed {failed}, missing {missing}", file=sys.stderr)
        return 1
    print(f"[experiments] results in {results}, doc {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

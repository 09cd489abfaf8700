#!/usr/bin/env python3
"""Data pipeline throughput (docs/data.md, "Measured throughput").

Tokenization: Debian's spm_encode against `switchboard prepare-data` on the
same file (the default corpus concatenated, ~11 MB) with the same model (the
default dataset's 8192-piece tokenizer.model); plus prepare-data on the corpus
as 497 documents, and tokenize_bench (our Encode vs one whole-text
SentencePiece call, ids checked equal first). Loader: tokens/s that
ShardSource and MixtureSource deliver (data_loader_bench, which validates the
batches before timing).

Wall-clock MB/s depends on what else runs on the machine (CI boxes are
shared), so CPU seconds of each child (user + sys) are reported too, and the
load average at the start.

Usage: python3 benchmarks/data_throughput.py [--build build] [--out benchmarks/results/data_throughput.json]
Needs: the switchboard, tokenize_bench and data_loader_bench targets built,
and Debian's `sentencepiece` package (launch/install_deps.sh).
"""
import argparse
import glob
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = "/usr/share/doc/python3.11/html/_sources"


def run(cmd, stdin=None):
    """Runs cmd; returns (wall seconds, child CPU seconds, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def available_cores():
    """CPU seconds per wall second that two concurrent busy processes get:
    2.0 on an idle 2-core machine, less when other jobs hold the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    burn = [sys.executable, "-c", "sum(i * i for i in range(6_000_000))"]
    procs = [subprocess.Popen(burn) for _ in range(2)]
    for p in procs:
        p.wait()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/data_throughput.json"))
    args = parser.parse_args()
    sb = os.path.join(args.build, "launch/switchboard")
    for tool in (sb, os.path.join(args.build, "benchmarks/tokenize_bench"),
                 os.path.join(args.build, "benchmarks/data_loader_bench")):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} missing: ninja -C {args.build} switchboard tokenize_bench data_loader_bench")
    if shutil.which("spm_encode") is None:
        sys.exit("spm_encode missing: bash launch/install_deps.sh (Debian package sentencepiece)")
    subprocess.run(["bash", os.path.join(ROOT, "launch/prepare_default_data.sh")], check=True,
                   env={**os.environ, "SB_BIN": sb}, stdout=subprocess.DEVNULL)
    data = os.path.join(ROOT, "runs/data/python-docs")
    model = os.path.join(data, "tokenizer.model")

    load = os.getloadavg()[0]
    cores = available_cores()
    print(f"load average {load:.2f}; a 2-process busy loop got {cores:.2f} cores")
    results = {"machine": f"{platform.node()} ({os.cpu_count()} cores)",
               "load_average_at_start": round(load, 2),
               "cores_available_to_a_2_process_busy_loop": round(cores, 2),
               "model": model, "tokenize": [],
               "loader": []}
    tmp = tempfile.mkdtemp(prefix="sb_data_bench.")
    try:
        corpus = os.path.join(tmp, "python-docs.txt")
        with open(corpus, "wb") as out:
            for path in sorted(glob.glob(SOURCES + "/**/*", recursive=True)):
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        out.write(f.read())
        size = os.path.getsize(corpus)

        def record(name, wall, cpu, nbytes, note=""):
            row = {"name": name, "mb": round(nbytes / 1e6, 2), "wall_s": round(wall, 2),
                   "cpu_s": round(cpu, 2), "mb_per_s": round(nbytes / 1e6 / wall, 2),
                   "mb_per_cpu_s": round(nbytes / 1e6 / cpu, 2) if cpu > 0 else None,
                   "note": note}
            results["tokenize"].append(row)
            print(f"{name:58s} {row['mb_per_s']:6.2f} MB/s  {row['mb_per_cpu_s']:6.2f} MB/cpu-s  {note}")

        with open(corpus, "rb") as f:
            wall, cpu, _ = run(["spm_encode", f"--model={model}", "--output_format=id"], stdin=f)
        record("spm_encode (Debian 0.1.97), 1 file, line by line", wall, cpu, size, "1 thread")
        for threads in (1, 2):
            wall, cpu, _ = run([sb, "prepare-data", "--input", corpus, "--out", os.path.join(tmp, "o"),
                                "--tokenizer", model, "--val_fraction", "0", "--threads",
                                str(threads), "--overwrite", "--quiet"])
            record(f"prepare-data, same file as one document, --threads {threads}", wall, cpu,
                   size, "includes reading and writing shards")
        wall, cpu, _ = run([sb, "prepare-data", "--input", SOURCES, "--out", os.path.join(tmp, "o"),
                            "--tokenizer", model, "--val_fraction", "0.02", "--threads", "2",
                            "--overwrite", "--quiet"])
        record("prepare-data, 497 files (documents), --threads 2", wall, cpu, size, "")
        wall, cpu, out = run([os.path.join(args.build, "benchmarks/tokenize_bench"), model, corpus])
        bench = json.loads(out)
        results["tokenize_bench"] = bench
        print(f"{'Tokenizer::Encode, first 2 MB, 1 thread':58s} {bench['encode_mb_per_s']:6.2f} MB/s")
        print(f"{'one SentencePiece call on the same 2 MB':58s} {bench['unsegmented_mb_per_s']:6.2f} MB/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    loader = os.path.join(args.build, "benchmarks/data_loader_bench")
    for dirs, batch, seq in (([data + "/train"], 8, 256), ([data + "/train"], 4, 1024),
                             ([data + "/train", data + "/val"], 8, 256)):
        _, _, out = run([loader, *dirs, "--batch", str(batch), "--seq", str(seq), "--seconds", "2"])
        row = json.loads(out)
        results["loader"].append(row)
        print(f"loader {row['kind']:8s} batch {batch} x seq {seq:5d}: {row['tokens_per_s'] / 1e6:8.1f} M tokens/s")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out} (load average at start {load:.2f}, {cores:.2f} cores available)")


if __name__ == "__main__":
    main()

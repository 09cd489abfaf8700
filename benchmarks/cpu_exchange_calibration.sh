#!/usr/bin/env bash
# Measures what the cost model is calibrated on, on THIS machine (CPU, MPI
# shared memory, 2 ranks), and writes benchmarks/results/cpu_mpi_exchange.json:
#  - all-to-all-v time per call over message sizes (alltoallv_bench);
#  - one MoE layer's forward exchange: dispatch + combine alone, experts
#    alone, serial, pipelined (dispatch_overlap_bench).
# Then prints the cost model's check of the exchange against the fit:
#   bash benchmarks/cpu_exchange_calibration.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
out=benchmarks/results/cpu_mpi_exchange.json
tmp=$(mktemp -d /tmp/sb_calib.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mpirun -np 2 --bind-to none "$build/benchmarks/alltoallv_bench" --min_bytes 65536 \
  --max_bytes 16777216 --factor 4 | tee "$tmp/a2a"
mpirun -np 2 --bind-to none "$build/benchmarks/dispatch_overlap_bench" --tokens 4096 \
  --d_model 256 --ffn 256 --chunks 2,4 | tee "$tmp/exchange"
python3 - "$tmp/a2a" "$tmp/exchange" "$out" <<'PY'
import json, re, sys
a2a, exchange, out = sys.argv[1:]
points = []
for line in open(a2a):
    f = line.split()
    if f and f[0].isdigit():
        points.append([int(f[0]), float(f[1])])
text = open(exchange).read()
def ms(name):
    return float(re.search(r"^%s\s+([\d.]+)" % re.escape(name), text, re.M).group(1))
rows = int(re.search(r"rows sent per rank (\d+)", text).group(1))
d_model = int(re.search(r"d_model (\d+)", text).group(1))
serial = ms("serial")
data = {
    "machine": "this development VM: 2 shared cores, OpenMPI shared memory (vader), f32",
    "alltoallv": {"ranks": 2, "size_bytes_time_us": points},
    "exchange": {"rows_sent_per_rank": rows, "d_model": d_model,
                 "dispatch_combine_ms": ms("  dispatch+combine only"),
                 "experts_ms": ms("  experts only"), "serial_ms": serial,
                 "pipelined_ms": {c: ms("pipelined, %s chunks" % c) for c in ("2", "4")},
                 "pipelined_vs_serial": min(ms("pipelined, 2 chunks"), ms("pipelined, 4 chunks")) / serial,
                 "ideal_vs_serial": ms("ideal overlap (max)") / serial},
}
json.dump(data, open(out, "w"), indent=1)
print("wrote", out)
PY
python3 benchmarks/ep_cost_model.py --calibrate-cpu "$out"

#!/usr/bin/env bash
# The device check in one call, on a bare GPU machine (CUDA driver and
# runtime, PyTorch and transformers; no Debian packages, no MPI daemon, no
# network), from the repository root and a pack made on the CPU machine by
# benchmarks/pack_gpu_check.sh:
#   bash benchmarks/gpu_check.sh [gpu_pack.tar.xz | PACK_DIR]
# In under 8 minutes on an H100/H200 it runs
#   1. every GPU test (label gpu: CUDA twins of every op against the CPU,
#      GPU optimizers, whole training steps GPU vs CPU, resume across devices);
#   2. 50 steps of configs/tiny.textproto on the CPU, on the GPU in FP32 and
#      in BF16, on a byte-level corpus of this repository's docs, and
#      compares the loss curves;
#   3. the benchmark: configs/gpu_1b.textproto on one GPU (gpu_step_bench:
#      tokens/s, MFU, step breakdown, peak memory), the experts' GEMMs
#      against a dense GEMM, and Hugging Face MixtralForCausalLM of the same
#      shape, batch and AdamW in bf16, eager and under torch.compile.
# Logs and summary.json go to $OUT (default gpu_check_out/), at most 8 files.
# Libraries: the pack brings everything but glibc and CUDA's; libcudart and
# cuBLAS come from the CUDA toolkit (nvcc's lib64, /usr/local/cuda/lib64),
# cuDNN (dlopen-ed by the attention) and NCCL from the nvidia-* wheels of the
# Python that has PyTorch, and torch/lib (docs/cuda.md, "Running the check").
# Budget: SB_GPU_CHECK_BUDGET_S (default 450 s) bounds the torch.compile run.
set -uo pipefail
start=$(date +%s)
budget=${SB_GPU_CHECK_BUDGET_S:-450}
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check_out}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}
elapsed() { echo $(( $(date +%s) - start )); }

pack=${1:-gpu_pack.tar.xz}
if [ -f "$pack" ]; then
  "$py" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$pack" "$work" || exit 2
  pack="$work/$(basename "$pack" .tar.xz)"
fi
[ -x "$pack/bin/switchboard" ] || { echo "gpu_check: no packed binaries in $pack (benchmarks/pack_gpu_check.sh)" >&2; exit 2; }
# shellcheck disable=SC1091
source "$pack/env.sh"
wheel_libs=$("$py" - <<'PY' 2>/dev/null
import glob, os
dirs = []
try:
    import nvidia
    for base in nvidia.__path__:
        # nvidia/cudnn/lib, nvidia/nccl/lib, ... and CUDA 13's nvidia/cu13/lib
        dirs += sorted(glob.glob(os.path.join(base, "*", "lib")) + glob.glob(os.path.join(base, "*", "lib64")))
except Exception:
    pass
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
print(":".join(d for d in dirs if os.path.isdir(d)))
PY
)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
done
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$wheel_libs"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

# ---------------------------------------------------------------- 1. environment
{
  echo "date: $(date -u)"; echo "host: $(hostname)"; nvidia-smi 2>&1 | head -20
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "--- libraries of switchboard:"; ldd "$pack/bin/switchboard" | grep -E "cuda|cublas|nccl|not found"
  echo "--- cuDNN as the attention will dlopen it:"
  "$py" -c "import ctypes; h = ctypes.CDLL('libcudnn.so.9'); print('libcudnn.so.9 loads, version', h.cudnnGetVersion())" 2>&1
  "$py" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" 2>&1
} > "$out/env.log" 2>&1

# ---------------------------------------------------------------- 2. GPU tests
: > "$out/tests.log"
for t in attention_reference_test cuda_ops_test cuda_routing_test optim_cuda_test gpu_training_test; do
  echo "=== $t" >> "$out/tests.log"
  timeout 240 "$pack/bin/$t" --gtest_output="json:$work/$t.json" >> "$out/tests.log" 2>&1
  echo "=== $t exit $?" >> "$out/tests.log"
done
echo "[gpu_check] tests done at $(elapsed) s"

# ------------------------------------------------ 3. 50 steps: CPU, GPU fp32, GPU bf16
cat README.md docs/*.md > "$work/corpus.txt"
common=(--config configs/tiny.textproto --set "data.train_path=$work/corpus.txt" --set data.val_path=
        --set train.steps=50 --set train.log_every=1 --set train.eval_every=0)
{
  timeout 150 "$pack/bin/switchboard" train "${common[@]}" --run_dir "$work/cpu"; echo "cpu exit $?"
  timeout 120 "$pack/bin/switchboard" train "${common[@]}" --set train.device=CUDA --set train.precision=FP32 \
    --run_dir "$work/gpu_fp32"; echo "gpu_fp32 exit $?"
  timeout 120 "$pack/bin/switchboard" train "${common[@]}" --set train.device=CUDA --run_dir "$work/gpu_bf16"
  echo "gpu_bf16 exit $?"
} > "$out/compare.log" 2>&1
echo "[gpu_check] 50-step comparison done at $(elapsed) s"

# ---------------------------------------------------------------- 4. benchmark
{
  timeout 300 "$pack/bin/gpu_step_bench" --config configs/gpu_1b.textproto --json "$work/switchboard.json"
  echo "gpu_step_bench exit $?"
  timeout 90 "$pack/bin/gpu_expert_gemm_bench" --config configs/gpu_1b.textproto --json "$work/expert_gemm.json"
  echo "gpu_expert_gemm_bench exit $?"
} > "$out/bench.log" 2>&1
echo "[gpu_check] switchboard benchmark done at $(elapsed) s"
PYTHONUNBUFFERED=1 timeout 180 "$py" benchmarks/hf_mixtral_bench.py --config configs/gpu_1b.textproto \
  --mode eager --json "$work/hf_eager.json" > "$out/hf_eager.log" 2>&1
echo "exit $?" >> "$out/hf_eager.log"
left=$(( budget - $(elapsed) ))
if [ "$left" -ge 60 ]; then
  PYTHONUNBUFFERED=1 timeout "$left" "$py" benchmarks/hf_mixtral_bench.py --config configs/gpu_1b.textproto \
    --mode compile --json "$work/hf_compile.json" > "$out/hf_compile.log" 2>&1
  echo "exit $? (time limit ${left} s)" >> "$out/hf_compile.log"
else
  echo "skipped: ${left} s of the ${budget} s budget left" > "$out/hf_compile.log"
fi
echo "[gpu_check] baselines done at $(elapsed) s"

# ---------------------------------------------------------------- 5. summary
"$py" benchmarks/gpu_check_summary.py "$work" "$out/summary.json" "$(elapsed)"
status=$?
echo "[gpu_check] $(elapsed) s; summary: $out/summary.json"
exit $status

#!/usr/bin/env python3
"""Groups the samples of a DWARF-unwound `perf record` of model_step_bench by
what the step was doing (docs/performance.md, "Where Switchboard's step goes").

  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 perf record -F 499 --call-graph dwarf,16384 \\
      -o dwarf.data build/benchmarks/model_step_bench --out_dir /tmp/p --warmup 2 --iters 10
  perf script -i dwarf.data -F comm,tid,ip,sym | python3 benchmarks/perf_breakdown.py

A sample counts for the first rule below that its call stack matches (GEMMs
by the layer that called ops::Gemm). Samples outside Model::Forward,
Model::Backward, AdamW::Step and ZeroGrad (init, file writing) are left out.
"""
import collections
import re
import sys

RULES = [  # (label, pattern any frame must match, and for GEMMs a second one)
    ("AdamW update", r"AdamW", None),
    ("zeroing gradients", r"ZeroGrad", None),
    ("cross-entropy forward + backward", r"CrossEntropy", None),
    ("GEMM: experts", r"sb::ops::Gemm", r"Experts|SwigluMlp"),
    ("GEMM: attention projections", r"sb::ops::Gemm", r"Attention::"),
    ("GEMM: router", r"sb::ops::Gemm", r"Router::"),
    ("GEMM: LM head", r"sb::ops::Gemm", r"sb::Model::"),
    ("attention core", r"CausalAttention", None),
    ("SwiGLU elementwise", r"ops::Swiglu", None),
    ("RMSNorm", r"RmsNorm", None),
    ("routing, dispatch, combine", r"Router|TopK|Softmax|Gather|Scatter|AssignSlots|Permutation|LoadBalancing|Entropy|Dispatch|Combine",
     None),
]
STEP = r"sb::Model::(Forward|Backward)|sb::AdamW::Step|ZeroGrad"


def stacks(lines):
    """perf script output -> list of stacks (innermost frame first)."""
    out, cur = [], []
    for line in lines:
        if line.startswith((" ", "\t")) and line.strip():
            parts = line.split(None, 1)
            cur.append(parts[1].strip() if len(parts) > 1 else "?")
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def main():
    counts = collections.Counter()
    for stack in stacks(sys.stdin):
        has = lambda pattern: any(re.search(pattern, f) for f in stack)  # noqa: E731
        if not has(STEP):
            continue
        for label, pattern, caller in RULES:
            if has(pattern) and (caller is None or has(caller)):
                counts[label] += 1
                break
        else:
            counts["other: " + re.sub(r"\(.*", "", stack[0])[:50]] += 1
    total = sum(counts.values())
    other = sum(v for k, v in counts.items() if k.startswith("other"))
    print(f"{total} samples in the step")
    for label, v in counts.most_common():
        if not label.startswith("other"):
            print(f"{100 * v / total:5.1f}%  {label}")
    print(f"{100 * other / total:5.1f}%  other, of which:")
    others = [(label, v) for label, v in counts.most_common() if label.startswith("other")]
    for label, v in others[:8]:
        print(f"         {100 * v / total:4.1f}%  {label[7:]}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Loads every golden file with the `safetensors` package (numpy backend: no
PyTorch needed) and lists sizes, tensors and metadata; fails when a file does
not load, a case misses one of its three files, the format version is not
the expected one, or the whole set grows past the size budget.

    /opt/sb-reference-venv/bin/python tests/reference/list_golden.py [--verbose] [DIR]
"""

import argparse
import json
import os
import sys

from safetensors import safe_open

EXPECTED_FORMAT = "1"
BUDGET_BYTES = 4 << 20  # the goldens are committed: keep them to a few MB


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", default=os.path.join(here, "..", "golden"))
    ap.add_argument("--verbose", action="store_true", help="list every tensor")
    args = ap.parse_args()
    files = sorted(os.listdir(args.dir))
    cases = sorted(f[: -len(".textproto")] for f in files if f.endswith(".textproto"))
    total = 0
    for case in cases:
        for suffix in (".textproto", "_weights.safetensors", "_golden.safetensors"):
            path = os.path.join(args.dir, case + suffix)
            if not os.path.exists(path):
                sys.exit(f"{case}: missing {case + suffix}")
            size = os.path.getsize(path)
            total += size
            if suffix == ".textproto":
                print(f"{case + suffix:48s} {size:9d} B")
                continue
            with safe_open(path, "np") as f:
                meta = f.metadata() or {}
                if meta.get("format_version") != EXPECTED_FORMAT:
                    sys.exit(f"{path}: format_version {meta.get('format_version')!r}, "
                             f"expected {EXPECTED_FORMAT!r}")
                names = list(f.keys())
                numel = sum(f.get_tensor(n).size for n in names)
                print(f"{case + suffix:48s} {size:9d} B  {len(names):4d} tensors  "
                      f"{numel:7d} values")
                if args.verbose:
                    for n in names:
                        t = f.get_tensor(n)
                        print(f"    {n:64s} {str(t.dtype):8s} {list(t.shape)}")
                    if "crosscheck_max_abs_err" in meta:
                        print("    cross-checks:", json.loads(meta["crosscheck_max_abs_err"]))
    print(f"{len(cases)} cases, {total} bytes in all ({total / (1 << 20):.2f} MiB)")
    if not cases:
        sys.exit(f"no golden case in {args.dir}")
    if total > BUDGET_BYTES:
        sys.exit(f"golden files take {total} bytes, over the {BUDGET_BYTES} budget")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the safetensors fixtures of moe/io/*_test.cc with the real
`safetensors` package (Hugging Face's Rust implementation) and numpy, so our
reader is checked against files we did not write and our f16 rounding
against numpy's.

Regenerate (a few KB; commit the output):
  python3 -m venv /tmp/st && /tmp/st/bin/pip install -r tests/reference/requirements-safetensors.txt
  /tmp/st/bin/python tests/reference/make_safetensors_fixtures.py
"""
import json
import os

import numpy as np
import safetensors
from safetensors import serialize_file
from safetensors.numpy import TensorSpec, save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "safetensors")


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (numpy has no bf16)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def dtypes_file():
    # Values the C++ test recomputes from the same formulas.
    t = {
        "f64": (np.arange(6, dtype=np.float64).reshape(2, 3) * 0.25 - 1.0),
        "f32": (np.arange(6, dtype=np.float32).reshape(3, 2) * 0.5 - 1.0),
        "f16": np.array([0.5, -2.0, 65504.0, 2.0**-24, -0.0, 1.0 / 3.0], dtype=np.float16),
        "i64": np.array([[-(2**40), 7], [0, 2**62]], dtype=np.int64),
        "i32": np.array([-5, 0, 2**31 - 1], dtype=np.int32),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    # numpy's own f16 -> f32 decoding of "f16", to compare ours against.
    t["f16_as_f32"] = t["f16"].astype(np.float32)
    path = os.path.join(OUT, "dtypes.safetensors")
    save_file(t, path, metadata={"producer": "make_safetensors_fixtures.py", "format": "np"})
    # BF16: numpy cannot hold it, so hand the Rust serializer raw bits.
    bits = bf16_bits([1.0, -1.5, 3.140625, 1e-3])
    spec = {"bf16": TensorSpec(dtype="bfloat16", shape=(2, 2), data_ptr=bits.ctypes.data,
                               data_len=bits.nbytes)}
    serialize_file(spec, os.path.join(OUT, "bf16.safetensors"), metadata=None)


def half_rounding_file():
    rng = np.random.default_rng(0)
    edges = np.array([
        0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 1e9, -1e9, np.inf, -np.inf, np.nan,
        2.0**-14, 2.0**-14 * (1 - 2.0**-11), 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001,
        2.0**-26, 1.5 * 2.0**-24, 2.5 * 2.0**-24, 1e-45, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11,
        1.0 + 2.0**-11 + 2.0**-20, 2049.0, 2051.0, -2049.0,
    ], dtype=np.float32)
    scale = np.float32(2.0) ** rng.integers(-30, 18, size=200).astype(np.float32)
    rand = (rng.standard_normal(200).astype(np.float32) * scale).astype(np.float32)
    src = np.concatenate([edges, rand]).astype(np.float32)
    with np.errstate(over="ignore"):  # 1e9 -> inf is one of the cases
        f16 = src.astype(np.float16)
    # Every sign and exponent with a few mantissas, subnormals and NaNs included.
    patterns = np.array([(s << 15) | (e << 10) | m for s in (0, 1) for e in range(32)
                         for m in (0, 1, 2, 0x155, 0x200, 0x2AA, 0x3FE, 0x3FF)], dtype=np.uint16)
    save_file({
        "src": src,
        "numpy_f16": f16,
        "half_bits": patterns.view(np.float16),
        "half_bits_as_f32": patterns.view(np.float16).astype(np.float32),  # numpy's decoding
    }, os.path.join(OUT, "half_rounding.safetensors"))


def sharded_dir():
    d = os.path.join(OUT, "sharded")
    os.makedirs(d, exist_ok=True)
    shard1 = {"model.embed_tokens.weight": np.arange(12, dtype=np.float32).reshape(4, 3),
              "model.norm.weight": np.ones(3, dtype=np.float32)}
    shard2 = {"lm_head.weight": -np.arange(12, dtype=np.float32).reshape(4, 3)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    total = 0
    for name, tensors in zip(names, [shard1, shard2]):
        save_file(tensors, os.path.join(d, name), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = name
            total += v.nbytes
    # As transformers' save_pretrained writes it.
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    dtypes_file()
    half_rounding_file()
    sharded_dir()
    print(f"wrote fixtures under {os.path.normpath(OUT)} with safetensors "
          f"{safetensors.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Loads a Hugging Face directory written by `switchboard export-hf` in
transformers and checks it computes what Switchboard computes.

    PY=/opt/sb-latest-venv/bin/python            # tests/reference/setup_latest_env.sh
    $PY tests/reference/check_hf_export.py HF_DIR [--switchboard build/launch/switchboard]
        [--tokens DATA_DIR] [--batch 2] [--seq 64] [--tol 1e-4]
    $PY tests/reference/check_hf_export.py HF_DIR --resave OUT   # from_pretrained + save_pretrained

Check mode: AutoModelForCausalLM.from_pretrained(HF_DIR) in float32, the
logits of a token batch (windows of DATA_DIR's validation shards when given,
else seeded random ids), against `switchboard forward --weights HF_DIR` on
the same tokens. Prints max |difference| relative to max |logit|, the share
of positions whose argmax agrees, both losses, and (with a tokenizer.model)
whether transformers' tokenizer gives SentencePiece's ids. Exits 1 when the
relative error exceeds --tol.

Resave mode: what a user of the ecosystem does with the export: load it and
save it again with save_pretrained (transformers' own layout and config
spelling), copying tokenizer files along. `switchboard upcycle --from OUT`
then starts from a directory transformers wrote.
"""

import argparse
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


def load(path: str):
    # transformers 5 renamed torch_dtype to dtype; the script also runs on 4.x.
    major = int(transformers.__version__.split(".")[0])
    dtype = {"dtype" if major >= 5 else "torch_dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", **dtype)
    return model.eval()


def shard_tokens(data_dir: str, count: int) -> np.ndarray:
    """The first `count` tokens of DATA_DIR/val (or DATA_DIR) shards (docs/data.md format)."""
    shard_dir = os.path.join(data_dir, "val") if os.path.isdir(os.path.join(data_dir, "val")) else data_dir
    files = sorted(glob.glob(os.path.join(shard_dir, "*.bin")))
    if not files:
        sys.exit(f"no *.bin token shards in {shard_dir}")
    with open(files[0], "rb") as f:
        raw = f.read()
    # data/shard_format.h: 64-byte header = magic "SBTOKENS", u32 version,
    # u32 token_bytes, u64 num_tokens, ...; then the ids.
    if raw[:8] != b"SBTOKENS":
        sys.exit(f"{files[0]}: not a Switchboard token shard")
    token_bytes, num_tokens = struct.unpack_from("<IQ", raw, 12)
    dtype = np.uint16 if token_bytes == 2 else np.uint32
    tokens = np.frombuffer(raw, dtype=dtype, offset=64, count=num_tokens)
    if tokens.size < count:
        sys.exit(f"{files[0]}: {tokens.size} tokens, need {count}")
    return tokens[:count].astype(np.int64)


def check(args) -> int:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = load(args.hf_dir)
    cfg = model.config
    print(f"transformers {transformers.__version__} / torch {torch.__version__}: loaded "
          f"{type(model).__name__} from {args.hf_dir} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
          f"parameters, {cfg.num_hidden_layers} layers"
          + (f", {cfg.num_local_experts} experts top-{cfg.num_experts_per_tok}" if hasattr(cfg, "num_local_experts") else "")
          + ")")
    n = args.batch * (args.seq + 1)
    if args.tokens:
        ids = shard_tokens(args.tokens, n)
        source = f"the first {n} tokens of {args.tokens}"
    else:
        ids = np.random.default_rng(0).integers(0, cfg.vocab_size, n)
        source = "seeded random ids"
    tokens = ids.reshape(args.batch, args.seq + 1).astype(np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path, out_path = os.path.join(tmp, "tokens.safetensors"), os.path.join(tmp, "out.safetensors")
        save_file({"tokens": tokens}, tok_path)
        cmd = [args.switchboard, "forward", "--weights", args.hf_dir, "--tokens", tok_path, "--out", out_path]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr}")
        ours = load_file(out_path)
    inputs = torch.from_numpy(tokens[:, :-1].astype(np.int64))
    targets = torch.from_numpy(tokens[:, 1:].astype(np.int64))
    with torch.no_grad():
        ref = model(inputs).logits.reshape(-1, cfg.vocab_size).double()
    our = torch.from_numpy(ours["logits"]).double()
    scale = ref.abs().max().item()
    err = (our - ref).abs().max().item()
    agree = (our.argmax(-1) == ref.argmax(-1)).double().mean().item()
    ref_loss = torch.nn.functional.cross_entropy(ref, targets.reshape(-1)).item()
    print(f"tokens: {args.batch} x {args.seq} from {source}")
    print(f"logits: max |switchboard - transformers| = {err:.3e}, max |logit| = {scale:.3f}, "
          f"relative {err / scale:.3e} (tolerance {args.tol:g}); argmax agrees at {100 * agree:.1f}% of positions")
    print(f"loss:   switchboard {float(ours['loss'][0]):.6f}, transformers {ref_loss:.6f}")
    tok_model = os.path.join(args.hf_dir, "tokenizer.model")
    if os.path.exists(tok_model):
        try:
            import sentencepiece as spm
            from transformers import AutoTokenizer
            text = "def main():\n    print('Hello, world!')  # The Python tutorial, section 3.1"
            sp = spm.SentencePieceProcessor(model_file=tok_model).encode(text)
            hf = AutoTokenizer.from_pretrained(args.hf_dir)(text, add_special_tokens=False)["input_ids"]
            print(f"tokenizer: transformers' {type(AutoTokenizer.from_pretrained(args.hf_dir)).__name__} "
                  f"{'gives' if hf == sp else 'does NOT give'} SentencePiece's ids on a sample "
                  f"({len(sp)} vs {len(hf)} tokens)")
        except Exception as e:  # report, never fail the logits check on it
            print(f"tokenizer: transformers could not load it: {type(e).__name__}: {e}")
    return 0 if err / scale <= args.tol else 1


def resave(args) -> int:
    model = load(args.hf_dir)
    if os.path.exists(args.resave):
        shutil.rmtree(args.resave)
    model.save_pretrained(args.resave)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(args.hf_dir, name)):
            shutil.copy(os.path.join(args.hf_dir, name), args.resave)
    files = sorted(os.listdir(args.resave))
    cfg = json.load(open(os.path.join(args.resave, "config.json")))
    print(f"transformers {transformers.__version__}: loaded {type(model).__name__} from {args.hf_dir}, "
          f"save_pretrained -> {args.resave}: {', '.join(files)} (model_type {cfg['model_type']}, "
          f"dtype {cfg.get('dtype', cfg.get('torch_dtype'))})")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir")
    ap.add_argument("--switchboard", default="build/launch/switchboard")
    ap.add_argument("--tokens", help="prepared dataset (or shard directory) to take tokens from")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--resave", help="load and save_pretrained into this directory instead of checking")
    args = ap.parse_args()
    sys.exit(resave(args) if args.resave else check(args))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/golden/hf/: Hugging Face model directories exactly as the
newest transformers writes them with save_pretrained, and the logits
transformers computes from them (issue 11: upcycling, HF import and export).

    bash tests/reference/setup_latest_env.sh                                # once
    /opt/sb-latest-venv/bin/python tests/reference/make_hf_golden.py          # rewrite tests/golden/hf/
    /opt/sb-latest-venv/bin/python tests/reference/make_hf_golden.py --check  # regenerate and compare

Directories (config.json + safetensors, written by save_pretrained):
  llama_f32/           LlamaForCausalLM, float32, untied head, rope_theta 5e5
  llama_bf16_tied/     LlamaForCausalLM, bfloat16, tied embeddings
  llama_f16_sharded/   LlamaForCausalLM, float16, sharded: model-0000i-of-0000n + index
  mixtral/             MixtralForCausalLM, float32, the published per-expert names
                       (transformers 5 converts back to them by default)
  mixtral_fused/       the same model saved with save_original_format=False:
                       transformers 5's fused mlp.experts.gate_up_proj / down_proj
logits.safetensors (metadata: versions, description):
  tokens [B, S] i32                   inputs of every case
  logits.<dir> [B*S, V] f32           transformers' logits of the saved model, reloaded
                                      with from_pretrained(dtype=float32)
  prompt.<i> [n_i] i32                three prompts (token ids)
  hidden.llama_f32.<i> [L, D] f32     output_hidden_states[l][0, -1] for l < L: the
                                      residual stream entering block l at the prompt's
                                      last token (what mergekit-moe's "hidden" router
                                      init averages)
  router_logits.mixtral [L*B*S, E] f32  transformers' router logits (layer-major)

CI needs none of this software: the C++ tests (tests/hf_*_test.cc) read the
files. Runs in seconds on one thread (bit-for-bit reproducible).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "tests", "golden", "hf")
MIN_TOPK_MARGIN = 1e-3  # logit gap: routing must not flip between float32 implementations
BATCH, SEQ = 2, 8
PROMPTS = [[5, 17, 33, 2, 60], [1, 9, 9, 40, 41, 42, 3], [63, 0, 31]]

COMMON = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, attn_implementation="eager")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """N(0, 0.15^2) matrices and 1 + N(0, 0.1^2) norm scales: logits of order
    one, so that a wrong weight shows (transformers' 0.02 init hides errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("gate.weight"):
                p.copy_(torch.randn(p.shape, generator=g))  # decisive routing
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def llama(tie: bool, rope_theta: float, seed: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(intermediate_size=48, tie_word_embeddings=tie, rms_norm_eps=1e-6,
                      rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
                      **COMMON)
    model = LlamaForCausalLM(cfg)
    randomize(model, seed)
    return model


def mixtral(seed: int) -> MixtralForCausalLM:
    cfg = MixtralConfig(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2,
                        rms_norm_eps=1e-5, router_aux_loss_coef=0.02, **COMMON)
    model = MixtralForCausalLM(cfg)
    randomize(model, seed)
    return model


def reload_logits(cls, path: str, tokens: torch.Tensor):
    """Logits of the directory as written (bf16/f16 weights upcast exactly)."""
    model = cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(tokens, output_hidden_states=True, output_router_logits=cls is MixtralForCausalLM)
    return model, out


def check_margin(router_logits, k: int) -> float:
    """Smallest gap between the k-th and (k+1)-th router logit of any token."""
    top = router_logits.float().topk(k + 1, dim=-1).values
    return float((top[:, k - 1] - top[:, k]).min())


def write(out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, 64, (BATCH, SEQ), generator=g)
    tensors = {"tokens": tokens.to(torch.int32).contiguous()}
    for i, p in enumerate(PROMPTS):
        tensors[f"prompt.{i}"] = torch.tensor(p, dtype=torch.int32)

    cases = [
        ("llama_f32", llama(False, 5e5, 1), torch.float32, {}),
        ("llama_bf16_tied", llama(True, 10000.0, 2), torch.bfloat16, {}),
        ("llama_f16_sharded", llama(False, 10000.0, 3), torch.float16, {"max_shard_size": "20KB"}),
    ]
    moe = mixtral(4)
    cases += [("mixtral", moe, torch.float32, {}),
              ("mixtral_fused", moe, torch.float32, {"save_original_format": False})]
    for name, model, dtype, save_kw in cases:
        path = os.path.join(out_dir, name)
        shutil.rmtree(path, ignore_errors=True)
        model.to(dtype).save_pretrained(path, **save_kw)
        model.to(torch.float32)
        cls = type(model)
        reloaded, out = reload_logits(cls, path, tokens)
        tensors[f"logits.{name}"] = out.logits.reshape(BATCH * SEQ, -1).contiguous()
        if cls is MixtralForCausalLM:
            router = torch.cat([r.reshape(BATCH * SEQ, -1) for r in out.router_logits])
            margin = check_margin(router, reloaded.config.num_experts_per_tok)
            if margin < MIN_TOPK_MARGIN:
                sys.exit(f"{name}: top-k margin {margin} < {MIN_TOPK_MARGIN}: pick another seed")
            tensors[f"router_logits.{name}"] = router.contiguous()
        if name == "llama_f32":
            for i, p in enumerate(PROMPTS):
                with torch.no_grad():
                    h = reloaded(torch.tensor([p]), output_hidden_states=True).hidden_states
                layers = reloaded.config.num_hidden_layers
                tensors[f"hidden.{name}.{i}"] = torch.stack([h[l][0, -1] for l in range(layers)])
    meta = {
        "format_version": "1",
        "description": "tests/reference/make_hf_golden.py: HF directories by save_pretrained, "
                       "logits by transformers",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "safetensors_version": safetensors.__version__,
        "python_version": sys.version.split()[0],
        "min_topk_margin": "%.3g" % MIN_TOPK_MARGIN,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(out_dir, "logits.safetensors"), metadata=meta)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare")
    args = ap.parse_args()
    if not args.check:
        write(OUT)
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
        print(f"wrote {OUT} ({total} bytes)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        write(tmp)
        bad = []
        for d, _, files in os.walk(tmp):
            for f in files:
                rel = os.path.relpath(os.path.join(d, f), tmp)
                ours, theirs = os.path.join(tmp, rel), os.path.join(OUT, rel)
                if not os.path.exists(theirs):
                    bad.append(f"{rel}: not committed")
                elif f.endswith(".safetensors"):
                    a, b = load_file(ours), load_file(theirs)
                    if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
                        bad.append(f"{rel}: tensors differ")
                elif f.endswith(".json") and json.load(open(ours)) != json.load(open(theirs)):
                    bad.append(f"{rel}: differs")
        if bad:
            sys.exit("not identical: " + "; ".join(bad))
        print("regenerated identically")


if __name__ == "__main__":
    main()

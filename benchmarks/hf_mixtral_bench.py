#!/usr/bin/env python3
"""Hugging Face MixtralForCausalLM training steps on the GPU: the baseline
that benchmarks/gpu_step_bench is compared with in the same run
(benchmarks/gpu_check.sh, docs/cuda.md "Benchmark").

The model has the config's shape (Mixtral: RoPE, GQA, SwiGLU experts,
renormalised top-k gates), parameters in bf16 (pure bf16 training, the
common HF recipe and the faster one for HF), torch.optim.AdamW (fused) with
the config's hyperparameters, gradient clipping, the same micro-batch of
uniform random tokens, HF's default attention ("sdpa") and experts
("grouped_mm" where available; the JSON records which). HF routes dropless;
Switchboard's gpu_1b drops past capacity 1.25: the active FLOPs are the same.

  python3 benchmarks/hf_mixtral_bench.py --config configs/gpu_1b.textproto \
      --mode eager|compile [--set k=v]... [--warmup 3] [--iters 10] --json F
"""
import argparse
import json
import math
import re
import sys
import time


def parse_textproto(path, overrides):
    """The scalar fields of a TrainConfig text file as {"block.field": value}."""
    fields, stack = {}, []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.match(r"^(\w+)\s*\{$", line)
            if m:
                stack.append(m.group(1))
                continue
            if line == "}":
                stack.pop()
                continue
            m = re.match(r"^(\w+)\s*:\s*(.+)$", line)
            if m:
                fields[".".join(stack + [m.group(1)])] = m.group(2).strip().strip('"')
    for o in overrides:
        key, value = o.split("=", 1)
        fields[key] = value
    return fields


def get(fields, key, default, cast):
    value = fields.get(key, default)
    if cast is bool:
        return str(value).lower() == "true"
    return cast(value)


def flops_per_token(c):
    """Megatron's active-FLOP count (launch/model_factory.cc TrainFlopsPerToken)."""
    d, hd = c["d"], c["d"] / c["heads"]
    attn = d * hd * (2 * c["heads"] + 2 * c["kv_heads"])
    active = c["layers"] * (attn + c["top_k"] * 3 * d * c["ffn"] + d * c["experts"])
    active += d * c["vocab"]
    return 6 * active + 12 * c["layers"] * d * c["seq"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/gpu_1b.textproto")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", required=True)
    p.add_argument("--device", default="cuda", help="cpu: a functional check of this script only")
    a = p.parse_args()

    import torch
    import transformers
    from transformers import MixtralConfig, MixtralForCausalLM

    f = parse_textproto(a.config, a.set)
    c = {
        "vocab": get(f, "model.vocab_size", 32000, int),
        "d": get(f, "model.d_model", 512, int),
        "layers": get(f, "model.num_layers", 8, int),
        "heads": get(f, "model.num_heads", 8, int),
        "kv_heads": get(f, "model.num_kv_heads", 8, int),
        "ffn": get(f, "model.expert_ffn_dim", 0, int) or get(f, "model.ffn_dim", 1408, int),
        "rope_theta": get(f, "model.rope_theta", 10000, float),
        "max_seq": get(f, "model.max_seq_len", 2048, int),
        "tie": get(f, "model.tie_embeddings", False, bool),
        "experts": get(f, "moe.num_experts", 8, int),
        "top_k": get(f, "moe.top_k", 2, int),
        "aux": get(f, "moe.aux_loss_coef", 0.01, float),
        "batch": get(f, "train.micro_batch_size", 8, int),
        "seq": get(f, "train.seq_len", 256, int),
        "lr": get(f, "optimizer.lr", 3e-4, float),
        "wd": get(f, "optimizer.weight_decay", 0.1, float),
        "b1": get(f, "optimizer.beta1", 0.9, float),
        "b2": get(f, "optimizer.beta2", 0.95, float),
        "eps": get(f, "optimizer.eps", 1e-8, float),
        "clip": get(f, "optimizer.grad_clip", 1.0, float),
    }
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("hf_mixtral_bench: no CUDA device")
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = MixtralConfig(
        vocab_size=c["vocab"], hidden_size=c["d"], intermediate_size=c["ffn"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
        num_key_value_heads=c["kv_heads"], num_local_experts=c["experts"],
        num_experts_per_tok=c["top_k"], max_position_embeddings=c["max_seq"],
        rope_theta=c["rope_theta"], tie_word_embeddings=c["tie"], router_aux_loss_coef=c["aux"],
        output_router_logits=True, attn_implementation="sdpa", use_cache=False)
    torch.manual_seed(1234)
    with torch.device(dev):
        model = MixtralForCausalLM(cfg)
    model = model.to(torch.bfloat16)
    model.train()
    experts_impl = getattr(model.config, "_experts_implementation", None)
    params = sum(x.numel() for x in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=c["lr"], betas=(c["b1"], c["b2"]), eps=c["eps"],
                            weight_decay=c["wd"], fused=cuda)
    run = torch.compile(model) if a.mode == "compile" else model
    g = torch.Generator(device="cpu").manual_seed(7)
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=g).to(dev)

    def step():
        out = run(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    t0 = time.perf_counter()
    first = step().item()
    sync()
    first_step_s = time.perf_counter() - t0  # includes compilation in compile mode
    if not abs(first - math.log(c["vocab"])) < 1.0:
        sys.exit(f"hf_mixtral_bench: initial loss {first:.4f}, expected ln V = {math.log(c['vocab']):.4f} +- 1")
    for _ in range(a.warmup):
        step()
    sync()
    times = []
    last = first
    for _ in range(a.iters):
        t = time.perf_counter()
        last = step().item()  # the .item() waits for the step
        times.append(time.perf_counter() - t)
    times.sort()
    step_s = times[len(times) // 2]
    tokens = c["batch"] * c["seq"]
    result = {
        "impl": "hf_mixtral_" + a.mode, "torch": torch.__version__,
        "transformers": transformers.__version__, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "experts_implementation": experts_impl, "attn_implementation": "sdpa",
        "precision": "bf16 parameters, fused AdamW", "params": params, "batch": c["batch"],
        "seq_len": c["seq"], "flops_per_token": flops_per_token(c), "loss_first": first,
        "loss_last": last, "first_step_s": first_step_s, "step_ms": 1e3 * step_s,
        "tokens_per_s": tokens / step_s,
        "tflops": tokens / step_s * flops_per_token(c) / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
        "warmup": a.warmup, "iters": a.iters,
    }
    with open(a.json, "w") as out:
        json.dump(result, out, indent=1)
    print(f"hf_mixtral_{a.mode} | {result['device']} | experts {experts_impl} | {params / 1e6:.1f}M params | "
          f"step {1e3 * step_s:.1f} ms | {result['tokens_per_s']:.0f} tokens/s | {result['tflops']:.1f} TFLOP/s | "
          f"peak {result['peak_memory_gib']:.2f} GiB | first step {first_step_s:.1f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cost model of data x expert parallel MoE training: step time, all-to-all
share and MFU of Mixtral-8x7B-shaped layouts on 8 to 512 H100s
(docs/parallel.md, "Projection"). A projection, not a measurement: nothing
here ran on a GPU.

  python3 benchmarks/ep_cost_model.py                   # projection tables
  python3 benchmarks/ep_cost_model.py --json            # the same rows as JSON
  python3 benchmarks/ep_cost_model.py --calibrate-cpu benchmarks/results/cpu_mpi_exchange.json
        # fit alpha-beta to this machine's MPI all-to-all and check the
        # model's exchange time against the measured one

Terms (each assumption is a named constant below, with its source):
  compute      matmul FLOPs / (peak x efficiency): dense GEMMs at the best
               measured H100 matmul efficiency, expert GEMMs derated when few
               rows reach an expert, attention at a FlashAttention-class rate,
               plus a fixed overhead fraction for the glue kernels;
  all-to-all   4 per MoE layer and micro-batch (dispatch + combine, forward
               and backward), alpha + bytes / busBw (nccl-tests busBw: bytes
               that leave the GPU); intra-node over NVLink, the remote share
               over the NIC; hierarchical = an NVLink stage then a NIC stage;
  all-reduce   ring, 2 (n-1)/n bytes / busBw + 2 (n-1) alpha, replicated
               parameters over the world, expert shards over their replicas;
  overlap      the gradient all-reduce hides behind the last micro-batch's
               backward except its last bucket; the all-to-all of C pipelined
               chunks hides behind expert compute except one chunk
               (parallel/pipelined_experts.h; GPU concurrency is assumed, the
               CPU measured none);
  optimizer    memory-bound AdamW pass over the local parameters;
  MFU          Megatron's convention: 6 x active matmul parameters per token
               plus 12 L s d attention, over step time x peak.
Python 3 standard library only.
"""
import argparse
import json
import math
import sys
from dataclasses import dataclass, replace

# ---------------------------------------------------------------- anchors
# ../shared/REFERENCES.md, "Performance anchors" (H100 SXM).
H100_PEAK_BF16 = 989e12        # dense bf16 FLOP/s
H100_BEST_MATMUL = 794e12      # best measured matmul: 80% of peak
NVLINK_BUSBW = 370e9           # effective NCCL bus bandwidth inside a node (B/s)
NIC_BUSBW = 46e9               # one 400 Gb/s NIC per GPU: 46-49 GB/s
HBM_BW = 3.35e12               # HBM3
HBM_BYTES = 80e9
GPUS_PER_NODE = 8
# ------------------------------------------------------------ assumptions
# Not anchored; each moves the result as docs/parallel.md says.
ALPHA_NVLINK = 10e-6           # s per NCCL call inside a node (launch + sync)
ALPHA_NIC = 20e-6              # s per call that crosses nodes
ALPHA_PEER = 1e-6              # s per peer of a grouped send/recv (per message)
NVLINK_M_HALF = 512 * 2**10    # message bytes at which NVLink p2p reaches half its busBw
NIC_M_HALF = 64 * 2**10        # same for the NIC (RDMA): small messages waste the link
EXPERT_M_HALF = 256            # rows per expert at which a grouped GEMM reaches half its best rate
ATTENTION_EFFICIENCY = 0.55    # fraction of peak of the fused attention (fwd + bwd)
GLUE_OVERHEAD = 0.10           # norms, RoPE, routing, permutation, losses: fraction of compute
GRAD_BYTES = 4                 # gradients all-reduced in fp32
BUCKET_BYTES = 25 * 2**20      # the last bucket cannot hide (parallel.grad_bucket_mb)
ACT_BYTES = 2                  # bf16 activations on the wire


@dataclass(frozen=True)
class Shape:
    name: str
    d_model: int = 4096
    layers: int = 32
    heads: int = 32
    kv_heads: int = 8
    expert_ffn: int = 14336
    experts: int = 8
    top_k: int = 2
    vocab: int = 32000
    seq_len: int = 4096

    def attention_params(self):  # q, k, v, o of one layer
        kv = self.d_model * self.kv_heads // self.heads
        return 2 * self.d_model * self.d_model + 2 * self.d_model * kv

    def expert_params(self):  # one expert of one layer (SwiGLU: w1, w3, w2)
        return 3 * self.d_model * self.expert_ffn

    def replicated_params(self):  # every rank holds them
        norms = (2 * self.layers + 1) * self.d_model
        router = self.layers * self.d_model * self.experts
        return (self.layers * self.attention_params() + 2 * self.vocab * self.d_model + norms +
                router)

    def total_params(self):
        return self.replicated_params() + self.layers * self.experts * self.expert_params()

    def active_matmul_params(self):  # weights a token multiplies (embedding lookup excluded)
        per_layer = (self.attention_params() + self.d_model * self.experts +
                     self.top_k * self.expert_params())
        return self.layers * per_layer + self.vocab * self.d_model

    def flops_per_token(self):  # training (forward + backward), Megatron's convention
        return 6 * self.active_matmul_params() + 12 * self.layers * self.seq_len * self.d_model


MIXTRAL = Shape("Mixtral-8x7B")
# The same total and active parameters in 4x finer experts (top-8 of 32): EP
# groups of 32 span 4 nodes, so the all-to-all crosses the NICs.
FINE = replace(MIXTRAL, name="Mixtral-8x7B fine-grained (32 experts of 3584, top-8)",
               expert_ffn=3584, experts=32, top_k=8)


@dataclass(frozen=True)
class Hardware:
    peak: float = H100_PEAK_BF16
    gemm_eff: float = H100_BEST_MATMUL / H100_PEAK_BF16
    nvlink: float = NVLINK_BUSBW
    nic: float = NIC_BUSBW
    hbm: float = HBM_BW
    gpus_per_node: int = GPUS_PER_NODE
    alpha_nvlink: float = ALPHA_NVLINK
    alpha_nic: float = ALPHA_NIC
    alpha_peer: float = ALPHA_PEER


H100 = Hardware()


@dataclass(frozen=True)
class Layout:
    gpus: int
    ep: int
    hierarchical: bool = False
    chunks: int = 1            # pipelined all-to-all chunks (1: no overlap)
    overlap_grad: bool = True
    tokens_per_gpu: int = 4096  # one sequence per micro-batch
    global_tokens: int = 4 * 2**20
    zero1: bool = True


def link_time(nbytes, message, busbw, m_half):
    """nbytes sent as messages of `message` bytes over a link of `busbw`:
    the achieved bandwidth is busbw * m / (m + m_half)."""
    if nbytes <= 0:
        return 0.0
    return nbytes / (busbw * message / (message + m_half))


def all_to_all_time(bytes_per_gpu, ep, hw, hierarchical):
    """One all-to-all(-v) of `bytes_per_gpu` per rank, uniform destinations."""
    if ep == 1:
        return 0.0
    g = min(hw.gpus_per_node, ep)
    nodes = ep // g
    per_peer = bytes_per_gpu / ep
    if nodes == 1:
        return (hw.alpha_nvlink + hw.alpha_peer * (ep - 1) +
                link_time(bytes_per_gpu * (ep - 1) / ep, per_peer, hw.nvlink, NVLINK_M_HALF))
    if not hierarchical:
        # One grouped call: NVLink and NIC shares move at once; one message per peer.
        local = link_time(bytes_per_gpu * (g - 1) / ep, per_peer, hw.nvlink, NVLINK_M_HALF)
        remote = link_time(bytes_per_gpu * (ep - g) / ep, per_peer, hw.nic, NIC_M_HALF)
        return hw.alpha_nic + hw.alpha_peer * (ep - 1) + max(local, remote)
    # Ours (two collectives, serialised): stage 1 on NVLink regroups by rail
    # (messages of bytes / g), stage 2 crosses the NICs with one message per
    # node (bytes / nodes); two regroup copies through HBM (read + write).
    stage1 = (hw.alpha_nvlink + hw.alpha_peer * (g - 1) +
              link_time(bytes_per_gpu * (g - 1) / g, bytes_per_gpu / g, hw.nvlink, NVLINK_M_HALF))
    stage2 = (hw.alpha_nic + hw.alpha_peer * (nodes - 1) +
              link_time(bytes_per_gpu * (nodes - 1) / nodes, bytes_per_gpu / nodes, hw.nic,
                        NIC_M_HALF))
    copies = 2 * 2 * bytes_per_gpu / hw.hbm
    return stage1 + stage2 + copies


def crossover_rows(shape=None, hw=None):
    """Flat vs hierarchical all-to-all time per call over tokens per GPU."""
    shape, hw = shape or FINE, hw or H100
    rows = []
    for ep in (16, 32):
        for tokens in (16, 64, 256, 1024, 4096):
            nbytes = tokens * shape.top_k * shape.d_model * ACT_BYTES
            flat = all_to_all_time(nbytes, ep, hw, False)
            hier = all_to_all_time(nbytes, ep, hw, True)
            rows.append({"ep": ep, "nodes": ep // hw.gpus_per_node, "tokens_per_gpu": tokens,
                         "bytes_per_gpu": nbytes, "flat_us": flat * 1e6, "hier_us": hier * 1e6})
    return rows


def ring_all_reduce_time(nbytes, n, busbw, alpha):
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / busbw + 2 * (n - 1) * alpha


def group_spans_nodes(members, stride, hw):
    """Does a group of `members` ranks `stride` apart span several nodes?"""
    return (members - 1) * stride >= hw.gpus_per_node


def exposed_all_to_all(a2a, expert_compute, chunks):
    """A/C + max(0, (A - X)(C - 1)/C): with C chunks all but one chunk's
    exchange can hide behind expert compute X (C = 1: nothing hides)."""
    return a2a / chunks + max(0.0, (a2a - expert_compute) * (chunks - 1) / chunks)


def expert_gemm_efficiency(rows_per_expert, hw):
    return hw.gemm_eff * rows_per_expert / (rows_per_expert + EXPERT_M_HALF)


def project(shape, layout, hw=H100, glue=GLUE_OVERHEAD):
    """Step time and its parts (seconds), shares and MFU of one layout."""
    n, ep, t = layout.gpus, layout.ep, layout.tokens_per_gpu
    assert shape.experts % ep == 0 and n % ep == 0, "ep must divide experts and GPUs"
    accum = max(1, round(layout.global_tokens / (n * t)))
    L = shape.layers
    # Compute of one micro-batch (forward + backward = 3x forward).
    dense_flops = 6 * t * (L * (shape.attention_params() + shape.d_model * shape.experts) +
                           shape.vocab * shape.d_model)
    expert_flops = 6 * t * L * shape.top_k * shape.expert_params()
    attention_flops = 12 * t * L * shape.seq_len * shape.d_model
    rows_per_expert = t * shape.top_k * ep / shape.experts  # balanced routing
    expert_time = expert_flops / (hw.peak * expert_gemm_efficiency(rows_per_expert, hw))
    compute = (dense_flops / (hw.peak * hw.gemm_eff) + expert_time +
               attention_flops / (hw.peak * ATTENTION_EFFICIENCY)) * (1 + glue)
    # All-to-all: 4 calls per MoE layer, t * k rows of d_model in bf16 each.
    a2a_bytes = t * shape.top_k * shape.d_model * ACT_BYTES
    a2a_layer = 4 * all_to_all_time(a2a_bytes, ep, hw, layout.hierarchical)
    a2a_raw = L * a2a_layer
    a2a_exposed = L * exposed_all_to_all(a2a_layer, expert_time / L, layout.chunks)
    # Gradient sync once per step: replicated over the world, expert shards over n/ep replicas.
    world_bw, world_alpha = ((hw.nic, hw.alpha_nic) if group_spans_nodes(n, 1, hw)
                             else (hw.nvlink, hw.alpha_nvlink))
    edp = n // ep
    edp_bw, edp_alpha = ((hw.nic, hw.alpha_nic) if group_spans_nodes(edp, ep, hw)
                         else (hw.nvlink, hw.alpha_nvlink))
    expert_local = L * shape.experts // ep * shape.expert_params()
    ar = (ring_all_reduce_time(shape.replicated_params() * GRAD_BYTES, n, world_bw, world_alpha) +
          ring_all_reduce_time(expert_local * GRAD_BYTES, edp, edp_bw, edp_alpha))
    backward_last = compute * 2 / 3
    last_bucket = ring_all_reduce_time(min(BUCKET_BYTES, GRAD_BYTES * shape.replicated_params()),
                                       n, world_bw, world_alpha) if n > 1 else 0.0
    ar_exposed = max(last_bucket, ar - backward_last) if layout.overlap_grad else ar
    ar_exposed = min(ar_exposed, ar)
    # Optimizer: AdamW reads and writes bf16 weights, fp32 master, m, v, reads fp32 grads.
    local_params = shape.replicated_params() + expert_local
    optimizer = local_params * (2 * 2 + 3 * 4 * 2 + 4) / hw.hbm
    step = accum * (compute + a2a_exposed) + ar_exposed + optimizer
    tokens = accum * t  # per GPU per step
    mfu = shape.flops_per_token() * tokens / (step * hw.peak)
    # Memory (GB): bf16 weights + fp32 grads, fp32 master + Adam moments (ZeRO-1: over replicas).
    state_replicated = shape.replicated_params() * (6 + 12 / (n if layout.zero1 else 1))
    state_expert = expert_local * (6 + 12 / (edp if layout.zero1 else 1))
    return {
        "shape": shape.name, "gpus": n, "ep": ep, "dp": n, "ep_nodes": max(1, ep // hw.gpus_per_node),
        "hierarchical": layout.hierarchical, "chunks": layout.chunks, "accum": accum,
        "compute_s": accum * compute, "a2a_raw_s": accum * a2a_raw,
        "a2a_exposed_s": accum * a2a_exposed, "allreduce_s": ar, "allreduce_exposed_s": ar_exposed,
        "optimizer_s": optimizer, "step_s": step,
        "a2a_share": accum * a2a_exposed / step, "a2a_share_no_overlap":
            accum * a2a_raw / (step - accum * a2a_exposed + accum * a2a_raw),
        "mfu": mfu, "tflops_per_gpu": mfu * hw.peak / 1e12,
        "state_gb": (state_replicated + state_expert) / 1e9,
        "fits_without_activations": (state_replicated + state_expert) < HBM_BYTES,
    }


def projection_rows(hw=H100, glue=GLUE_OVERHEAD):
    rows = []
    for gpus in (8, 16, 32, 64, 128, 256, 512):
        for chunks in (1, 4):
            rows.append(project(MIXTRAL, Layout(gpus=gpus, ep=8, chunks=chunks), hw, glue))
        if gpus >= 32:
            for hier in (False, True):
                rows.append(project(FINE, Layout(gpus=gpus, ep=32, hierarchical=hier, chunks=4), hw,
                                    glue))
    return rows


# Megatron-Core, Mixtral 8x7B on H100 (../shared/REFERENCES.md): measured.
MEGATRON_MIXTRAL_TFLOPS = 468.0


def glue_for_anchor(gpus=64, target_tflops=MEGATRON_MIXTRAL_TFLOPS, hw=H100):
    """The glue overhead at which the no-overlap Mixtral row at `gpus`
    reproduces the anchor (bisection; the anchor's layout differs: TP + EP,
    activation recompute: the fitted overhead absorbs all of that)."""
    lo, hi = 0.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        r = project(MIXTRAL, Layout(gpus=gpus, ep=8, chunks=1), hw, mid)
        lo, hi = (mid, hi) if r["tflops_per_gpu"] > target_tflops else (lo, mid)
    return (lo + hi) / 2


def print_table(rows):
    print("| shape | GPUs | EP (nodes) | all-to-all | chunks | step s | compute | a2a exposed "
          "(raw) | all-reduce exposed | a2a share | MFU | TFLOP/s | state GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape'].split(' ')[0]}{' fine' if 'fine' in r['shape'] else ''} | {r['gpus']} "
              f"| {r['ep']} ({r['ep_nodes']}) | {'hier' if r['hierarchical'] else 'flat'} "
              f"| {r['chunks']} | {r['step_s']:.2f} | {r['compute_s']:.2f} "
              f"| {r['a2a_exposed_s']:.3f} ({r['a2a_raw_s']:.3f}) | {r['allreduce_exposed_s']:.3f} "
              f"| {100 * r['a2a_share']:.1f}% | {100 * r['mfu']:.1f}% | {r['tflops_per_gpu']:.0f} "
              f"| {r['state_gb']:.0f}{'' if r['fits_without_activations'] else ' (>80)'} |")


# ------------------------------------------------------------ CPU calibration
def fit_alpha_beta(points):
    """Least squares time = alpha + beta * bytes over (bytes, seconds) points."""
    n = len(points)
    sx = sum(b for b, _ in points)
    sy = sum(t for _, t in points)
    sxx = sum(b * b for b, _ in points)
    sxy = sum(b * t for b, t in points)
    beta = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    alpha = (sy - beta * sx) / n
    return alpha, beta


def calibrate_cpu(path):
    """Fits this machine's MPI all-to-all and predicts the MoE exchange that
    benchmarks/dispatch_overlap_bench.cc measured on the same machine."""
    with open(path) as f:
        data = json.load(f)
    np_ = data["alltoallv"]["ranks"]
    # nccl-tests' size is the whole send buffer; (n-1)/n of it leaves the rank.
    points = [(s * (np_ - 1) / np_, t * 1e-6) for s, t in data["alltoallv"]["size_bytes_time_us"]]
    alpha, beta = fit_alpha_beta(points)
    ex = data["exchange"]
    rows = ex["rows_sent_per_rank"]
    nbytes = rows * ex["d_model"] * 4  # f32 on the CPU
    predicted = 2 * (alpha + beta * nbytes * (np_ - 1) / np_)  # dispatch + combine
    return {"alpha_us": alpha * 1e6, "busbw_gbs": 1 / beta / 1e9,
            "exchange_predicted_ms": predicted * 1e3,
            "exchange_measured_ms": ex["dispatch_combine_ms"],
            "ratio_measured_over_predicted": ex["dispatch_combine_ms"] / (predicted * 1e3),
            "overlap_measured": ex.get("pipelined_vs_serial"),
            "overlap_ideal": ex.get("ideal_vs_serial")}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--calibrate-cpu", metavar="FILE")
    p.add_argument("--glue-overhead", type=float, default=GLUE_OVERHEAD,
                   help="non-matmul share of compute; 'anchor' fits Megatron's 468 TFLOP/s")
    p.add_argument("--anchored", action="store_true",
                   help="use the glue overhead that reproduces Megatron's Mixtral anchor at 64 GPUs")
    p.add_argument("--nic-busbw", type=float, default=NIC_BUSBW, help="bytes/s per GPU")
    p.add_argument("--alpha-scale", type=float, default=1.0, help="multiplies every latency")
    args = p.parse_args(argv)
    if args.calibrate_cpu:
        print(json.dumps(calibrate_cpu(args.calibrate_cpu), indent=1))
        return 0
    hw = replace(H100, nic=args.nic_busbw, alpha_nvlink=ALPHA_NVLINK * args.alpha_scale,
                 alpha_nic=ALPHA_NIC * args.alpha_scale, alpha_peer=ALPHA_PEER * args.alpha_scale)
    glue = glue_for_anchor(hw=hw) if args.anchored else args.glue_overhead
    rows = projection_rows(hw, glue)
    if args.json:
        print(json.dumps({"glue_overhead": glue, "rows": rows, "crossover": crossover_rows(hw=hw)},
                         indent=1))
        return 0
    print(f"# projection (not measured): glue overhead {glue:.3f}, NIC {hw.nic / 1e9:.0f} GB/s, "
          f"latencies x{args.alpha_scale}; anchor: Megatron-Core Mixtral 8x7B "
          f"{MEGATRON_MIXTRAL_TFLOPS:.0f} TFLOP/s/GPU")
    print_table(rows)
    print()
    print("# all-to-all per call, fine-grained shape: flat vs hierarchical (ours, two stages)")
    print("| EP (nodes) | tokens/GPU | MB/GPU | flat us | hierarchical us |")
    print("|---|---|---|---|---|")
    for r in crossover_rows(hw=hw):
        print(f"| {r['ep']} ({r['nodes']}) | {r['tokens_per_gpu']} | {r['bytes_per_gpu'] / 2**20:.0f} "
              f"| {r['flat_us']:.0f} | {r['hier_us']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""PNG plots of a benchmarks/scaling.py report (Debian's python3-matplotlib).
plot_all(report, out_dir) draws what the report has data for and returns the
file names:
  experts.png     tokens/s vs experts per top-k, HF eager on the same points, speedup
  breakdown.png   step time by phase for every point (stacked)
  ranks.png       strong and weak scaling over ranks and expert-parallel sizes
  roofline.png    expert GEMMs: measured rate vs arithmetic intensity under the
                  measured GEMM peak and memory-bandwidth roofs
  capacity.png    dropped fraction and tokens/s vs capacity factor
  size.png        tokens/s and MFU vs tokens per batch and vs d_model
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Step-time categories of the breakdown, from the rows' *_ms columns.
CATEGORIES = [
    ("attention", ["attention_ms"], "#4c72b0"),
    ("router", ["router_ms"], "#dd8452"),
    ("permute + unpermute", ["permute_ms", "unpermute_ms"], "#937860"),
    ("dispatch", ["dispatch_ms"], "#c44e52"),
    ("experts", ["experts_ms"], "#55a868"),
    ("combine", ["combine_ms"], "#da8bc3"),
    ("LM head + loss", ["lm_head_loss_ms"], "#8172b3"),
    ("norms, embedding, other", ["norm_ms", "embedding_ms", "other_compute_ms"], "#8c8c8c"),
    ("grad sync", ["grad_sync_ms"], "#ccb974"),
    ("optimizer", ["optimizer_ms"], "#64b5cd"),
]


def rows_of(report, sweep):
    return [r for r in report["rows"] if r["sweep"] == sweep]


def save(fig, out, name, names):
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=100)
    plt.close(fig)
    names.append(name)


def experts(report, out, names):
    rows = rows_of(report, "experts")
    if not rows:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k in sorted({r["top_k"] for r in rows}):
        rs = sorted((r for r in rows if r["top_k"] == k), key=lambda r: r["num_experts"])
        x = [r["num_experts"] for r in rs]
        line, = ax.plot(x, [r["tokens_per_s"] for r in rs], "o-", label=f"Switchboard top-{k}")
        hf = [r for r in rs if "hf_eager_tokens_per_s" in r]
        if hf:
            ax.plot([r["num_experts"] for r in hf], [r["hf_eager_tokens_per_s"] for r in hf], "s--",
                    color=line.get_color(), alpha=0.7, label=f"HF eager top-{k}")
            ax2.plot([r["num_experts"] for r in hf], [r["speedup_vs_hf_eager"] for r in hf], "o-",
                     color=line.get_color(), label=f"top-{k}")
    for a in (ax, ax2):
        a.set_xscale("log", base=2)
        a.set_xlabel("experts")
        a.grid(alpha=0.3)
    ax.set_ylabel("training tokens/s")
    ax.set_ylim(bottom=0)
    ax.set_title("throughput vs experts (dropless)")
    ax.legend(fontsize=8)
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_ylabel("Switchboard speedup over HF eager")
    ax2.set_ylim(bottom=0)
    ax2.set_title("ratio, measured in the same run")
    ax2.legend(fontsize=8)
    save(fig, out, "experts.png", names)


def breakdown(report, out, names):
    sweeps = []
    for r in report["rows"]:
        if r["sweep"] not in sweeps:
            sweeps.append(r["sweep"])
    if not sweeps:
        return
    heights = [len(rows_of(report, s)) for s in sweeps]
    fig, axes = plt.subplots(len(sweeps), 1, figsize=(11, 0.32 * sum(heights) + 1.2 * len(sweeps) + 0.8),
                             gridspec_kw={"height_ratios": [h + 2 for h in heights]}, squeeze=False)
    for ax, s in zip(axes[:, 0], sweeps):
        rs = rows_of(report, s)
        left = [0.0] * len(rs)
        for name, cols, color in CATEGORIES:
            widths = [max(0.0, sum(r.get(c, 0) for c in cols)) for r in rs]
            ax.barh(range(len(rs)), widths, left=left, color=color, label=name)
            left = [l + w for l, w in zip(left, widths)]
        ax.set_yticks(range(len(rs)), [r["point"] + (" *" if r["oversubscribed"] else "") for r in rs], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(s, fontsize=10, loc="left")
        ax.set_xlabel("ms per step (mean over ranks)")
    axes[0, 0].legend(fontsize=7, ncol=5, loc="lower left", bbox_to_anchor=(0, 1.08))
    save(fig, out, "breakdown.png", names)


def ranks(report, out, names):
    strong, weak = rows_of(report, "strong_scaling"), rows_of(report, "weak_scaling")
    if not strong and not weak:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rs, title in ((axes[0], strong, "strong scaling (same global batch)"),
                          (axes[1], weak, "weak scaling (same batch per rank)")):
        if not rs:
            ax.axis("off")
            continue
        base = rs[0]["tokens_per_s"]
        labels = [f"np {r['ranks']}\nep {r['ep']}" + ("\n(oversub.)" if r["oversubscribed"] else "") for r in rs]
        ax.bar(range(len(rs)), [r["tokens_per_s"] for r in rs], color="#4c72b0")
        for i, r in enumerate(rs):
            ax.text(i, r["tokens_per_s"], f"{r['tokens_per_s'] / base:.2f}x", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rs)), labels, fontsize=8)
        ax.set_ylabel("tokens/s, all ranks")
        ax.set_title(title + f"; {report['sweep']['cores']} cores in total")
    save(fig, out, "ranks.png", names)


def roofline(report, out, names):
    peaks = report["peaks"]
    cores = report["sweep"]["cores"]
    p = peaks.get(cores) or peaks.get(str(cores))
    if not p:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    peak, bw = p["peak_gflops"], p["triad_gb_per_s"]
    ax.plot([x for x in (0.5, peak / bw, 2000)], [min(peak, bw * x) for x in (0.5, peak / bw, 2000)], "k-", lw=1.2,
            label=f"roofs: f32 GEMM peak {peak:.0f} GFLOP/s, triad {bw:.1f} GB/s (measured)")
    markers = {"fwd_up": "o", "fwd_down": "s", "bwd_dw_up": "^", "bwd_dx": "v", "bwd_dw_down": "D"}
    colors = {}
    for e in p["expert"]:
        c = colors.setdefault((e["d_model"], e["ffn"]), f"C{len(colors)}")
        for prod in e["products"]:
            ax.scatter(prod["intensity"], prod["gflops"], marker=markers[prod["name"]], color=c, s=18, alpha=0.8)
        ax.annotate(f"{e['rows']}", (e["products"][0]["intensity"], e["products"][0]["gflops"]), fontsize=6,
                    xytext=(3, -8), textcoords="offset points")
    for (d, f), c in colors.items():
        ax.scatter([], [], color=c, label=f"expert GEMMs d_model {d}, width {f} (label: rows per expert)")
    for name, m in markers.items():
        ax.scatter([], [], marker=m, color="gray", label=name)
    # Whole expert phases of the sweeps: 18 D F FLOP per kept choice over the experts' time.
    pts = [(r, 18 * r["d_model"] * r["expert_ffn_dim"] * r["tokens_per_step"] * r["top_k"] *
            (1 - r["dropped_fraction"]) / (r["experts_ms"] / 1e3) / 1e9)
           for r in report["rows"] if r["ranks"] == 1 and r["experts_ms"] > 0]
    if pts:
        for r, g in pts:
            rows = r["tokens_per_step"] * r["top_k"] / r["num_experts"]
            d, f = r["d_model"], r["expert_ffn_dim"]
            ai = 2 * rows * d * f / (4 * (rows * d + d * f + rows * f))
            ax.scatter(ai, g, marker="x", color="k", s=20)
        ax.scatter([], [], marker="x", color="k", label="experts phase of 1-rank sweep points (incl. SwiGLU)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of A, B, C)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"expert GEMMs on {cores} threads (OpenBLAS sgemm)")
    ax.legend(fontsize=6.5, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    save(fig, out, "roofline.png", names)


def capacity(report, out, names):
    rows = rows_of(report, "capacity")
    if not rows:
        return
    rows = sorted(rows, key=lambda r: float(r["capacity_factor"]) if float(r["capacity_factor"]) > 0 else 1e9)
    labels = [("dropless" if float(r["capacity_factor"]) <= 0 else str(r["capacity_factor"])) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(len(rows)), [r["tokens_per_s"] for r in rows], color="#4c72b0")
    ax.set_xticks(range(len(rows)), labels)
    ax.set_xlabel("capacity factor (train)")
    ax.set_ylabel("tokens/s", color="#4c72b0")
    ax2 = ax.twinx()
    ax2.plot(range(len(rows)), [100 * r["dropped_fraction"] for r in rows], "o-", color="#c44e52")
    ax2.set_ylabel("dropped choices (%)", color="#c44e52")
    ax2.set_ylim(bottom=0)
    ax.set_title("capacity factor: throughput and dropped choices")
    save(fig, out, "capacity.png", names)


def size(report, out, names):
    tokens, width = rows_of(report, "tokens"), rows_of(report, "d_model")
    if not tokens and not width:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rs, key, xlabel in ((axes[0], tokens, "tokens_per_step", "tokens per batch"),
                                (axes[1], width, "d_model", "d_model (expert width 2 x d_model)")):
        if not rs:
            ax.axis("off")
            continue
        rs = sorted(rs, key=lambda r: r[key])
        ax.plot([r[key] for r in rs], [r["tokens_per_s"] for r in rs], "o-", color="#4c72b0")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("tokens/s", color="#4c72b0")
        ax2 = ax.twinx()
        ax2.plot([r[key] for r in rs], [100 * r["mfu_measured"] for r in rs], "s--", color="#55a868")
        ax2.set_ylabel("MFU vs measured GEMM peak (%)", color="#55a868")
        ax2.set_ylim(0, 100)
    save(fig, out, "size.png", names)


def plot_all(report, out):
    names = []
    for plot in (experts, breakdown, ranks, roofline, capacity, size):
        plot(report, out, names)
    return names

#!/usr/bin/env python3
"""Plots of `switchboard analyze-routing` (launch/analyze_routing_command.cc)
from its routing.json, with Debian's python3-matplotlib:

  python3 launch/plot_routing.py OUT/routing.json OUT/

expert_load.png      share of routed choices per expert, one row per MoE layer
top_tokens.png       first-choice expert of the most frequent tokens, per layer
coselection.png      log2 lift of expert pairs chosen together (top-k >= 2)
layer_agreement.png  normalised mutual information and Goodman-Kruskal lambda
                     of first choices between MoE layers
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def grid(n, width=4.0, height=3.2, max_cols=4):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def label(layer):
    return f"block {layer['block']}"


def expert_load(r, out):
    E, layers = r["num_experts"], r["layers"]
    fig, ax = plt.subplots(figsize=(max(7, 0.35 * E + 3), 0.45 * len(layers) + 1.9))
    shares = [[100 * s for s in layer["load_share"]] for layer in layers]
    im = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0)
    ax.set_yticks(range(len(layers)), [f"{label(l)} ({l['max_over_mean']:.2f}x)" for l in layers])
    ax.set_xticks(range(E))
    ax.set_xlabel("expert")
    ax.set_title(f"share of routed choices (%), balanced = {100 / E:.1f}%\n(busiest expert / mean in brackets)")
    fig.colorbar(im, ax=ax, label="%")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "expert_load.png"), dpi=110)
    plt.close(fig)


def top_tokens(r, out):
    tokens = r["top_tokens"]
    if not tokens:
        return
    fig, axes = grid(len(r["layers"]), width=0.3 * r["num_experts"] + 3.5, height=0.28 * len(tokens) + 1.5)
    for li, ax in enumerate(axes):
        rows = [[c / t["count"] for c in t["layers"][li]["first_choice"]] for t in tokens]
        ax.imshow(rows, aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set_yticks(range(len(tokens)), [f"{t['piece']!r} ({t['count']})" for t in tokens], fontsize=7)
        ax.set_xticks(range(r["num_experts"]))
        ax.set_xlabel("first-choice expert")
        ax.set_title(label(r["layers"][li]))
    fig.suptitle("where the most frequent tokens go (share of their occurrences)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "top_tokens.png"), dpi=110)
    plt.close(fig)


def coselection(r, out):
    if r["top_k"] < 2:
        return
    fig, axes = grid(len(r["layers"]))
    for layer, ax in zip(r["layers"], axes):
        # log2 of the lift, clipped to +-3 (8x more or less often than chance);
        # pairs never chosen together show at -3.
        cells = [[max(-3.0, min(3.0, math.log2(v))) if v > 0 else -3.0 for v in row]
                 for row in layer["coselection_lift"]]
        for e in range(len(cells)):
            cells[e][e] = float("nan")  # top-k never repeats an expert
        im = ax.imshow(cells, cmap="coolwarm", vmin=-3, vmax=3)
        ax.set_title(label(layer))
        ax.set_xlabel("expert")
        ax.set_ylabel("expert")
        fig.colorbar(im, ax=ax, label="log2 lift")
    fig.suptitle("co-selection: log2(pairs chosen together / independent choices), 0 = no preference")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "coselection.png"), dpi=110)
    plt.close(fig)


def layer_agreement(r, out):
    a = r["layer_agreement"]
    names = [str(l["block"]) for l in r["layers"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, title in ((axes[0], "nmi", "normalised mutual information"),
                           (axes[1], "lambda", "Goodman-Kruskal lambda (row predicts column)")):
        im = ax.imshow(a[key], cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("MoE block")
        ax.set_ylabel("MoE block")
        ax.set_title(title)
        for i, row in enumerate(a[key]):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
        fig.colorbar(im, ax=ax)
    fig.suptitle("first-choice routing agreement between layers")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "layer_agreement.png"), dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        r = json.load(f)
    out = sys.argv[2]
    for plot in (expert_load, top_tokens, coselection, layer_agreement):
        plot(r, out)
    print(f"plots: {', '.join(sorted(p for p in os.listdir(out) if p.endswith('.png')))} in {out}")


if __name__ == "__main__":
    main()

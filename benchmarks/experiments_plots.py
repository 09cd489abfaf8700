"""PNG curves and bars of benchmarks/experiments_report.py (matplotlib, Agg).

Small files on purpose (dpi 80): they are committed under docs/experiments/.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 80


def _band(ax, xs, curve, label, scale=1.0, **kw):
    ys = [p["val"] for p in curve]
    sd = [p["std"] or 0.0 for p in curve]
    line, = ax.plot([x * scale for x in xs], ys, label=label, **kw)
    ax.fill_between([x * scale for x in xs], [y - s for y, s in zip(ys, sd)],
                    [y + s for y, s in zip(ys, sd)], color=line.get_color(), alpha=0.2)


def _save(fig, results, name):
    fig.tight_layout()
    fig.savefig(os.path.join(results, name), dpi=DPI)
    plt.close(fig)
    return name


def plot_all(results, rows, arms, plan):
    """Writes the PNGs; returns {key: file name}."""
    seeds = len(plan["settings"]["seeds"])
    out = {}
    a_arms = [a for a, s in arms.items() if s["set"] == "a" and s["curve"]]
    for key, field, scale, unit in (("set_a_tokens", "tokens", 1e-6, "tokens (M)"),
                                    ("set_a_flops", "flops", 1e-12, "training FLOPs (T)")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm in a_arms:
            c = arms[arm]["curve"]
            _band(ax, [p[field] for p in c], c, arm, scale, lw=2.2 if arm == "dense" else 1.3,
                  color="black" if arm == "dense" else None)
        ax.set_xlabel(unit)
        ax.set_ylabel("val loss (trainer eval)")
        ax.set_title(f"(a) dense vs MoE, equal active FLOPs/token; mean ± std of {seeds} seeds",
                     fontsize=9)
        _zoom(ax, [arms[a]["curve"] for a in a_arms])
        ax.legend(fontsize=8)
        out[key] = _save(fig, results, key + ".png")

    cd, cu = arms.get("continue_dense"), arms.get("continue_upcycled")
    dense = arms.get("dense")
    if cd and cu and cd["curve"] and cu["curve"] and dense and dense["curve"]:
        start = dense["curve"][-1]  # the base's final eval = both continuations' step 0
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        for ax, field, scale, unit in ((axes[0], "tokens", 1e-6, "extra tokens (M)"),
                                       (axes[1], "flops", 1e-12, "extra training FLOPs (T)")):
            for arm, color in (("continue_dense", "black"), ("continue_upcycled", "tab:red")):
                c = [dict(start, tokens=0, flops=0)] + arms[arm]["curve"]
                _band(ax, [p[field] for p in c], c, arm, scale, color=color, marker=".")
            ax.set_xlabel(unit)
            ax.set_ylabel("val loss (trainer eval)")
            ax.legend(fontsize=8)
        fig.suptitle(f"(b) after the dense run: continue dense vs upcycle (8 experts top-2); "
                     f"step 0 = dense final; {seeds} seeds", fontsize=9)
        out["set_b"] = _save(fig, results, "set_b.png")

    c_arms = ["moe_e8_top2"] + [a for a, s in arms.items() if s["set"] == "c"]
    c_arms = [a for a in c_arms if a in arms]
    if c_arms:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
        panels = (("final_val_full", "final val loss (whole split)", 1.0),
                  ("train_drop", "dropped choices, training (%)", 100.0),
                  ("tokens_per_s", "tokens/s (one thread)", 1.0))
        for ax, (key, title, scale) in zip(axes, panels):
            ms = [arms[a][key] for a in c_arms]
            ys = [(m[0] or 0.0) * scale for m in ms]
            es = [(m[1] or 0.0) * scale for m in ms]
            ax.bar(range(len(c_arms)), ys, yerr=es, capsize=3,
                   color=["gray"] + ["tab:blue"] * (len(c_arms) - 1))
            ax.set_xticks(range(len(c_arms)))
            ax.set_xticklabels(c_arms, rotation=60, ha="right", fontsize=7)
            ax.set_title(title, fontsize=9)
            if key == "final_val_full":
                lo = min(y - e for y, e in zip(ys, es))
                hi = max(y + e for y, e in zip(ys, es))
                ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.1 * (hi - lo + 1e-3))
        fig.suptitle(f"(c) ablations of moe_e8_top2 (gray); mean ± std of {seeds} seeds", fontsize=9)
        out["set_c_bars"] = _save(fig, results, "set_c_bars.png")

    z = [r for r in rows if r["arm"] in ("z0_high_lr", "z1e-3_high_lr") and r["train_losses"]]
    if z:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        colors = {"z0_high_lr": "tab:red", "z1e-3_high_lr": "tab:blue"}
        labelled = set()
        for r in z:
            xs, ys = zip(*r["train_losses"])
            ax.plot(xs, ys, color=colors[r["arm"]], lw=1,
                    label=None if r["arm"] in labelled else r["arm"])
            labelled.add(r["arm"])
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (logged mean)")
        ax.set_title(f"(c) z-loss at lr {plan['settings']['high_lr']:g}: every seed", fontsize=9)
        ax.legend(fontsize=8)
        out["set_c_zloss"] = _save(fig, results, "set_c_zloss.png")
    return out


def _zoom(ax, curves):
    """Leave out the first eval points (loss ~9 at init) so the differences show."""
    vals = [p["val"] for c in curves for p in c[len(c) // 4:]]
    if vals:
        lo, hi = min(vals), max(vals)
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-3), hi + 0.3 * (hi - lo + 1e-3))

"""Summary, table and figure of ``benchmarks/hard_negatives.py``'s results (no training here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from quality import paired_test


def _paired(per_seed: dict, base: dict) -> tuple[float, float] | None:
    common = [s for s in per_seed if s in base]
    if not common:
        return None
    rr = np.mean([per_seed[s]["rr"] for s in common], axis=0)
    rr_base = np.mean([base[s]["rr"] for s in common], axis=0)
    return float(rr.mean() - rr_base.mean()), paired_test(rr, rr_base)


def summarise(results: dict) -> dict:
    """exp -> negatives -> run -> MRR mean/std, delta and p against InfoNCE (same negatives)."""
    table: dict = {}
    for exp, by_neg in results["runs"].items():
        infonce = {neg: runs["infonce"] for neg, runs in by_neg.items() if "infonce" in runs}
        best = max(
            infonce, key=lambda n: np.mean([e["mrr"] for e in infonce[n].values()]), default=None
        )
        for neg, runs in by_neg.items():
            for spec, per_seed in runs.items():
                mrrs = [e["mrr"] for e in per_seed.values()]
                row = {
                    "mrr_mean": float(np.mean(mrrs)),
                    "seeds": len(mrrs),
                    "mrr_std": float(np.std(mrrs, ddof=1)) if len(mrrs) > 1 else 0.0,
                    "step_seconds": _median(e.get("step_seconds") for e in per_seed.values()),
                }
                if spec != "infonce" and neg in infonce and (p := _paired(per_seed, infonce[neg])):
                    row["delta_vs_infonce"], row["p_value"] = p
                if (
                    best
                    and (neg, spec) != (best, "infonce")
                    and (p := _paired(per_seed, infonce[best]))
                ):
                    row["best_infonce"] = best
                    row["delta_vs_best_infonce"], row["p_vs_best_infonce"] = p
                table.setdefault(exp, {}).setdefault(neg, {})[spec] = row
    return table


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def report(results: dict, png: Path | None) -> None:
    """Print the summary table (and draw it)."""
    print(
        f"\n{'experiment':<15}{'negatives':<10}{'run':<36}{'MRR':>8}{'std':>8}{'n':>3}"
        f"{'delta':>9}{'p':>8}{'d best':>9}{'p best':>8}{'s/step':>8}"
    )
    nan = float("nan")
    for exp, by_neg in results["summary"].items():
        for neg, rows in by_neg.items():
            for spec, r in rows.items():
                print(
                    f"{exp:<15}{neg:<10}{spec:<36}{r['mrr_mean']:>8.4f}{r['mrr_std']:>8.4f}"
                    f"{r['seeds']:>3}{r.get('delta_vs_infonce', nan):>9.4f}"
                    f"{r.get('p_value', nan):>8.4f}{r.get('delta_vs_best_infonce', nan):>9.4f}"
                    f"{r.get('p_vs_best_infonce', nan):>8.4f}{r['step_seconds'] or nan:>8.1f}"
                )
    if png is not None and results["summary"]:
        plot(results["summary"], png)


def plot(summary: dict, path: Path) -> None:
    """Grouped bars per experiment: negatives on x, one bar per loss; +/- = p < 0.01 above/below
    InfoNCE with the same negatives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(7 * len(summary), 4.8), squeeze=False)
    for ax, (exp, by_neg) in zip(axes[0], summary.items()):
        specs = list(dict.fromkeys(s for rows in by_neg.values() for s in rows))
        others = [s for s in specs if s != "infonce"]  # InfoNCE gray, the rest tab20, distinct
        colours = {s: plt.get_cmap("tab20")(k % 20) for k, s in enumerate(others)}
        colours["infonce"] = "dimgray"
        width = 0.8 / len(specs)
        means = []
        for j, spec in enumerate(specs):
            for i, rows in enumerate(by_neg.values()):
                if spec not in rows:
                    continue
                r, x = rows[spec], i + (j - (len(specs) - 1) / 2) * width
                ax.bar(
                    x,
                    r["mrr_mean"],
                    width,
                    yerr=r["mrr_std"],
                    capsize=2,
                    color=colours[spec],
                    label=spec if spec not in ax.get_legend_handles_labels()[1] else None,
                )
                means.append(r["mrr_mean"])
                if r.get("p_value", 1.0) < 0.01:  # + above, - below InfoNCE (same negatives)
                    sign = "+" if r["delta_vs_infonce"] > 0 else "-"
                    ax.text(x, r["mrr_mean"] + r["mrr_std"], sign, ha="center", fontsize=12)
        ax.set_xticks(range(len(by_neg)), list(by_neg))
        ax.set_ylim(min(means) - 0.03, max(means) + 0.03)
        ax.set(
            title=f"{exp}: test MRR, mean +- std over seeds",
            xlabel="negatives (+ / -: p < 0.01 above / below InfoNCE with the same negatives)",
            ylabel="MRR",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

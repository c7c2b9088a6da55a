"""Summary, paired tests, table and figure of ``false_negatives.py``'s results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from quality import paired_test, save_results

PEERS = ("infonce", "gist")


def _row(per_seed: dict, peers: dict) -> dict:
    seeds = sorted(per_seed)
    mrrs = [per_seed[s]["mrr"] for s in seeds]
    row: dict = {
        "mrr_mean": float(np.mean(mrrs)),
        "mrr_std": float(np.std(mrrs, ddof=1)) if len(mrrs) > 1 else 0.0,
        "seeds": seeds,
        "best_epochs": [per_seed[s].get("best_epoch") for s in seeds],
        "step_seconds": float(np.median([per_seed[s].get("step_seconds") or 0 for s in seeds])),
        "false_negative_share": float(
            np.mean([np.mean(per_seed[s].get("false_negative_share", [0])) for s in seeds])
        ),
    }
    weights = [per_seed[s]["copy_weights"] for s in seeds if "copy_weights" in per_seed[s]]
    if weights:
        row["copy_weights"] = {k: float(np.mean([w[k] for w in weights])) for k in weights[0]}
    for name, base in peers.items():
        common = [s for s in seeds if s in base]
        if not common or base is per_seed:
            continue
        rr = np.mean([per_seed[s]["rr"] for s in common], axis=0)
        rr_base = np.mean([base[s]["rr"] for s in common], axis=0)
        row[f"delta_vs_{name}"] = float(rr.mean() - rr_base.mean())
        row[f"p_vs_{name}"] = paired_test(rr, rr_base)
    return row


def summarise(results: dict) -> dict:
    """rate -> loss -> mean/std MRR, paired tests vs InfoNCE and GIST, copy weights."""
    table: dict = {}
    for rate, runs in results.get("runs", {}).items():
        peers = {name: runs[name] for name in PEERS if name in runs}
        for spec, per_seed in runs.items():
            table.setdefault(rate, {})[spec] = _row(per_seed, peers)
        oracle, base = table[rate].get("oracle"), table[rate].get("infonce")
        if oracle and base:  # share of the InfoNCE -> oracle gap each loss recovers
            gap = oracle["mrr_mean"] - base["mrr_mean"]
            for row in table[rate].values():
                row["gap_recovered"] = (row["mrr_mean"] - base["mrr_mean"]) / gap if gap else None
    return table


def save(results: dict, out: Path) -> None:
    save_results(results, out, summarise)


def plot(summary: dict, path: Path) -> None:
    """Test MRR vs the realised false-negative share, one line per loss, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    specs = sorted({s for rows in summary.values() for s in rows})
    rates = sorted(summary, key=float)
    for k, spec in enumerate(specs):
        pts = [(float(r), summary[r][spec]) for r in rates if spec in summary[r]]
        xs = [100 * x + 0.3 * (k - len(specs) / 2) for x, _ in pts]  # dodge the error bars
        ax.errorbar(
            xs,
            [row["mrr_mean"] for _, row in pts],
            yerr=[row["mrr_std"] for _, row in pts],
            marker="o",
            capsize=3,
            label=spec,
            linestyle="--" if spec in ("oracle", "mnrl") else "-",
        )
    ax.set(
        xlabel="false negatives (% of in-batch negatives that are copies of the positive)",
        ylabel="test MRR (clean held-out Ruby)",
        title="Controlled false negatives (mean +/- std over seeds)",
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict, png: Path | None) -> None:
    """Print the table (and draw the figure)."""
    summary = results.get("summary") or summarise(results)
    print(
        f"\n{'rate':<6}{'loss':<14}{'MRR':>8}{'std':>8}{'n':>3}{'d_inf':>9}{'p_inf':>8}"
        f"{'d_gist':>9}{'p_gist':>8}{'gap%':>7}{'w_copy':>8}{'w_true':>8}{'s/step':>8}"
    )
    nan = float("nan")
    for rate in sorted(summary, key=float):
        for spec, row in summary[rate].items():
            w = row.get("copy_weights", {})
            gap = row.get("gap_recovered")
            print(
                f"{rate:<6}{spec:<14}{row['mrr_mean']:>8.4f}{row['mrr_std']:>8.4f}"
                f"{len(row['seeds']):>3}{row.get('delta_vs_infonce', nan):>9.4f}"
                f"{row.get('p_vs_infonce', nan):>8.4f}{row.get('delta_vs_gist', nan):>9.4f}"
                f"{row.get('p_vs_gist', nan):>8.4f}"
                f"{100 * gap if gap is not None else nan:>7.0f}"
                f"{w.get('w_copies', nan):>8.3f}{w.get('w_true_negatives', nan):>8.3f}"
                f"{row['step_seconds']:>8.2f}"
            )
    print("\n" + markdown(summary))
    if png is not None and summary:
        plot(summary, png)


def markdown(summary: dict) -> str:
    """The summary as a Markdown table (for benchmarks/README.md)."""

    def signed(row: dict, peer: str) -> str:
        if f"delta_vs_{peer}" not in row:
            return " | "
        p = row[f"p_vs_{peer}"]
        return f"{row[f'delta_vs_{peer}']:+.4f} | {'< 0.001' if p < 0.001 else f'{p:.3f}'}"

    lines = [
        "| false negatives | loss | test MRR, mean +- std | seeds | vs InfoNCE | p | vs GIST | p "
        "| gap recovered | w on copies / true negatives |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rate in sorted(summary, key=float):
        for spec, row in summary[rate].items():
            gap = row.get("gap_recovered")
            w = row.get("copy_weights")
            kept = f"{w['w_copies']:.2f} / {w['w_true_negatives']:.2f}" if w else ""
            lines.append(
                f"| {100 * float(rate):.0f}% | {spec} | {row['mrr_mean']:.4f} +- "
                f"{row['mrr_std']:.4f} | {len(row['seeds'])} | {signed(row, 'infonce')} | "
                f"{signed(row, 'gist')} | {'' if gap is None else f'{100 * gap:.0f}%'} | "
                f"{kept} |"
            )
    return "\n".join(lines)

"""Summary, paired tests, table and figure of ``real_duplicates.py``'s results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from false_negatives_report import _row
from quality import paired_test, save_results

PEERS = ("infonce", "gist")
RUN_FIELDS = ("best_epoch", "step_seconds", "false_negative_share", "copy_weights")


def _per_test(per_seed: dict, test: str) -> dict:
    """seed -> that test's entry, with the run's own fields beside it."""
    return {
        s: e[test] | {k: e[k] for k in RUN_FIELDS if k in e}
        for s, e in per_seed.items()
        if test in e
    }


def summarise(results: dict) -> dict:
    """sampling -> test -> loss -> mean/std MRR and paired tests vs InfoNCE and GIST; plus, per
    loss, clustered vs random."""
    table: dict = {}
    runs = results.get("runs", {})
    tests = sorted({t for r in runs.values() for e in _entries(r) for t in e if _is_test(e[t])})
    for sampling, by_loss in runs.items():
        for test in tests:
            views = {spec: _per_test(per_seed, test) for spec, per_seed in by_loss.items()}
            peers = {name: views[name] for name in PEERS if name in views}
            table.setdefault(sampling, {})[test] = {
                spec: _row(view, peers) for spec, view in views.items() if view
            }
    if "random" in runs and "clustered" in runs:
        for test in tests:
            for spec in runs["clustered"]:
                a = _per_test(runs["clustered"][spec], test)
                b = _per_test(runs.get("random", {}).get(spec, {}), test)
                common = sorted(set(a) & set(b))
                if not common:
                    continue
                rr_a = np.mean([a[s]["rr"] for s in common], axis=0)
                rr_b = np.mean([b[s]["rr"] for s in common], axis=0)
                table.setdefault("clustered_vs_random", {}).setdefault(test, {})[spec] = {
                    "delta": float(rr_a.mean() - rr_b.mean()),
                    "p": paired_test(rr_a, rr_b),
                    "seeds": common,
                }
    return table


def _entries(by_loss: dict):
    return [e for per_seed in by_loss.values() for e in per_seed.values()]


def _is_test(value) -> bool:
    return isinstance(value, dict) and "rr" in value


def save(results: dict, out: Path) -> None:
    save_results(results, out, summarise)


def plot(summary: dict, path: Path) -> None:
    """Test MRR per loss, random vs clustered batches, one panel per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplings = [s for s in ("random", "clustered") if s in summary]
    tests = sorted({t for s in samplings for t in summary[s]})
    fig, axes = plt.subplots(1, len(tests), figsize=(5.5 * len(tests), 4.2), squeeze=False)
    for ax, test in zip(axes[0], tests):
        specs = sorted({spec for s in samplings for spec in summary[s].get(test, {})})
        x = np.arange(len(specs))
        for k, sampling in enumerate(samplings):
            rows = summary[sampling].get(test, {})
            ys = [rows[s]["mrr_mean"] if s in rows else np.nan for s in specs]
            es = [rows[s]["mrr_std"] if s in rows else 0 for s in specs]
            ax.bar(x + (k - 0.5) * 0.38, ys, 0.38, yerr=es, capsize=3, label=f"{sampling} batches")
        finite = [r["mrr_mean"] for s in samplings for r in summary[s].get(test, {}).values()]
        ax.set_ylim(min(finite) - 0.03, max(finite) + 0.02)
        ax.set_xticks(x, specs, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="test MRR", title=f"test: {test} (mean +/- std over seeds)")
        ax.legend(fontsize=8)
    fig.suptitle("Trained on a vendored code base (pip, setuptools and what they vendor)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(summary: dict) -> str:
    """The summary as a Markdown table (for benchmarks/README.md)."""
    lines = [
        "| batches | test | loss | test MRR, mean +- std | seeds | vs InfoNCE (p) | vs GIST (p) "
        "| clustered - random (p) | likely FN share | w likely FN / others |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    versus = summary.get("clustered_vs_random", {})
    for sampling in ("random", "clustered"):
        for test, rows in sorted(summary.get(sampling, {}).items()):
            for spec, row in rows.items():
                cells = []
                for peer in PEERS:
                    d = row.get(f"delta_vs_{peer}")
                    cells.append("" if d is None else f"{d:+.4f} ({_p(row[f'p_vs_{peer}'])})")
                cr = versus.get(test, {}).get(spec) if sampling == "clustered" else None
                w = row.get("copy_weights")
                shift = "" if cr is None else f"{cr['delta']:+.4f} ({_p(cr['p'])})"
                kept = f"{w['w_copies']:.2f} / {w['w_true_negatives']:.2f}" if w else ""
                lines.append(
                    f"| {sampling} | {test} | {spec} | {row['mrr_mean']:.4f} +- "
                    f"{row['mrr_std']:.4f} | {len(row['seeds'])} | {cells[0]} | {cells[1]} | "
                    f"{shift} | "
                    f"{100 * row['false_negative_share']:.2f}% | "
                    f"{kept} |"
                )
    return "\n".join(lines)


def report(results: dict, png: Path | None) -> None:
    """Print the Markdown table (and draw the figure)."""
    summary = results.get("summary") or summarise(results)
    print(markdown(summary))
    if png is not None and any(s in summary for s in ("random", "clustered")):
        plot(summary, png)

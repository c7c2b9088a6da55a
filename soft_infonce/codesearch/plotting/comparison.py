"""``results.png`` of the training command: the compared runs on axes that show the size of
their differences honestly.

Left, the validation MRR against the training step, every curve starting from the untrained
encoder's level (a dashed line) on an axis from 0 to 1. Right, each run's test MRR as a bar
from zero, beside the zero-shot encoder's, with the value written on the bar. Given the
``results.json`` of several seeds, the curves are the mean with the seeds' range shaded, and
the bars the mean with the range as an error bar and each seed as a dot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from soft_infonce.codesearch.plotting._figure import new_figure, save
from soft_infonce.codesearch.plotting.runs import _history_points, _load_results, _runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_run_comparison"]

ZERO_SHOT = "zero-shot"


def _test_mrr(run: Any, test_set: str | None) -> float | None:
    tests = run.get("test") if isinstance(run, Mapping) else None
    if not isinstance(tests, Mapping) or not tests:
        return None
    metrics = tests.get(test_set) if test_set else next(iter(tests.values()))
    value = metrics.get("mrr") if isinstance(metrics, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def _zero_shot_valid(runs: Mapping[str, Any]) -> float | None:
    value = runs.get(ZERO_SHOT, {}).get("valid", {}).get("mrr")
    return float(value) if isinstance(value, (int, float)) else None


def plot_run_comparison(
    results: str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any],
    path: str | os.PathLike[str] | None = None,
    *,
    test_set: str | None = None,
) -> Figure:
    """Validation curves and test MRR bars of the runs of one or several ``results.json``.

    Args:
        results: A ``results.json`` (path or dict) of ``soft-infonce train``, or a list of them
            (one per seed, the same runs in each).
        path: Where to write the PNG; ``None`` writes nothing.
        test_set: Which test set's MRR the bars show (default: each run's first).

    Returns:
        The figure. ``axes[0]``: one line per trained run (mean over seeds) labelled with its
        name, and the zero-shot level as a dashed line labelled ``zero-shot`` when the results
        hold it; ``axes[1]``: one bar per run (zero-shot first) of height the mean test MRR.

    Raises:
        ValueError: no run has a test MRR or a validation curve.
    """
    sources = [results] if isinstance(results, (str, os.PathLike, Mapping)) else list(results)
    if not sources:
        raise ValueError("results must hold at least one results.json, got an empty list")
    seeds = [_runs(_load_results(source)) for source in sources]
    names = [name for name in seeds[0] if all(name in runs for runs in seeds)]
    figure, (left, right) = new_figure(1, 2, width=5.0, height=3.8)
    zero_valid = [v for v in (_zero_shot_valid(runs) for runs in seeds) if v is not None]
    start = float(np.mean(zero_valid)) if zero_valid else None
    drawn = 0
    for name in names:
        if name == ZERO_SHOT:
            continue
        curves = [_history_points(runs[name], None) for runs in seeds]
        if not all(curves):
            continue
        steps = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
        if not steps:
            continue
        values = np.array([[dict(c)[s] for s in steps] for c in curves])  # (seeds, steps)
        if start is not None:
            steps, values = [0.0, *steps], np.hstack([np.full((len(curves), 1), start), values])
        (line,) = left.plot(steps, values.mean(0), marker="o", markersize=3, label=name)
        if len(curves) > 1:
            left.fill_between(steps, values.min(0), values.max(0), alpha=0.2,
                              color=line.get_color(), linewidth=0)  # fmt: skip
        drawn += 1
    if start is not None:
        left.axhline(start, linestyle="--", color="grey", linewidth=1, label=ZERO_SHOT)
    seeds_note = f" (mean of {len(seeds)} seeds, range shaded)" if len(seeds) > 1 else ""
    left.set(xlabel="training step", ylabel="validation MRR", ylim=(0, 1),
             title="Validation MRR" + seeds_note)  # fmt: skip
    left.grid(alpha=0.3)
    if drawn or start is not None:
        left.legend(loc="lower right")
    bars: list[tuple[str, list[float]]] = []
    for name in names:
        tested = [_test_mrr(runs[name], test_set) for runs in seeds]
        found = [v for v in tested if v is not None]
        if found:
            bars.append((name, found))
    if not bars and not drawn:
        raise ValueError(
            f"results must hold runs with a test MRR or a validation curve, got {names}"
        )
    if bars:
        means = [float(np.mean(v)) for _, v in bars]
        x = np.arange(len(bars))
        errors = None
        if len(seeds) > 1:
            errors = np.array([[m - min(v), max(v) - m] for m, (_, v) in zip(means, bars)]).T
        trained = iter(range(len(bars)))  # the curves' colours, zero-shot in grey
        colors = ["grey" if name == ZERO_SHOT else f"C{next(trained)}" for name, _ in bars]
        right.bar(x, means, yerr=errors, color=colors, alpha=0.8, capsize=4)
        for i, (mean, (_, vals)) in enumerate(zip(means, bars)):
            right.text(i, mean / 2, f"{mean:.3f}", ha="center", va="center", fontsize=8)
            if len(vals) > 1:
                right.plot([i] * len(vals), vals, "k.", markersize=4)
        right.set_xticks(x, [name for name, _ in bars], rotation=20)
    right.set(ylabel=f"test MRR{' (' + test_set + ')' if test_set else ''}", ylim=(0, 1),
              title="Test MRR" + (f" (mean of {len(seeds)} seeds, range)" if len(seeds) > 1
                                  else ""))  # fmt: skip
    right.grid(alpha=0.3, axis="y")
    save(figure, path)
    return figure

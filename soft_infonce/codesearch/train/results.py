"""Resume and result files: a run resumes from its last *complete* checkpoint
(:mod:`soft_infonce.integrations.hf.checkpoints`), ``results.json`` is rewritten atomically after
every run, and a
resumed invocation reuses the runs a previous one finished.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from soft_infonce.codesearch.train.checks import RESUME_LAST, Run
from soft_infonce.integrations.hf.checkpoints import last_complete_checkpoint

logger = logging.getLogger("soft_infonce.codesearch.train")


def resume_point(args: Any, run: Run, n_runs: int) -> str | None:
    """The checkpoint a run resumes from: the one named (for its run), else its last
    complete one. Incomplete newer ones are renamed aside so rotation never picks them."""
    wanted = args.resume_from_checkpoint
    if wanted is None:
        if last_complete_checkpoint(run.output_dir) is not None:
            logger.warning(
                "%s holds checkpoints: training starts over (--resume_from_checkpoint resumes)",
                run.output_dir,
            )
        return None
    if wanted not in RESUME_LAST and (
        n_runs == 1 or Path(wanted).resolve().parent == run.output_dir.resolve()
    ):
        return str(wanted)
    # one process renames the incomplete ones; the others skip them the same way
    found = last_complete_checkpoint(run.output_dir, set_aside_incomplete=args.process_index == 0)
    if found is None:
        logger.info("%s: no complete checkpoint, training from the start", run.output_dir)
    return None if found is None else str(found)


def write_results(out_dir: Path, payload: dict[str, Any]) -> None:
    """``results.json``, replaced atomically: a crash leaves the last complete file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out_dir / "results.json")


def plot_results(out_dir: Path, payload: dict[str, Any], weights: dict) -> None:
    """``results.png`` (validation MRR curves) and ``weights.png`` (the weights, Fig. 2)."""
    try:
        from soft_infonce.codesearch.plotting import plot_mrr_curves, plot_weight_distribution

        plot_mrr_curves(payload, out_dir / "results.png")
        if weights:
            plot_weight_distribution(weights, out_dir / "weights.png")
    except ImportError:
        logger.warning("matplotlib is missing: no figures (pip install 'soft-infonce[plot]')")
    except ValueError as error:  # e.g. no run logged a validation MRR
        logger.warning("no figure: %s", error)


def print_table(results: dict, set_names: list[str]) -> None:
    header = f"{'run':<24}" + "".join(f"{n + ' MRR':>14}{n + ' R@1':>12}" for n in set_names)
    print("\n" + header + f"{'train s':>10}\n" + "-" * len(header + " " * 10))
    for name, res in results.items():
        row = f"{name:<24}"
        for n in set_names:
            m = res["test"][n]
            row += f"{m['mrr']:>14.4f}{m['recall@1']:>12.4f}"
        row += f"{res.get('train_seconds', 0.0):>10.0f}"
        print(row)


def finished_runs(out_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The runs a previous invocation with the same config finished (``results.json`` holds
    them and their best model was saved): a resume reuses them instead of training again."""
    try:
        previous = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        same = json.loads(json.dumps(config, default=str))
        for old_or_new in (previous["config"], same):
            old_or_new["training"].pop("resume_from_checkpoint", None)
        if previous["config"] != same:
            logger.info("%s is from another config: no run is reused", out_dir / "results.json")
            return {}
        runs = previous["runs"]
        return {
            name: run
            for name, run in runs.items()
            if name != "zero-shot" and "test" in run and Path(run["saved_model"]).is_dir()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}

"""Resume and result files: a run resumes from its last *complete* checkpoint
(:mod:`soft_infonce.integrations.hf.checkpoints`), ``results.json`` is rewritten atomically after
every run, and a
resumed invocation reuses the runs a previous one finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
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
    """``results.png`` (validation curves from the zero-shot level and test MRR bars from zero)
    and ``weights.png`` (the weights, Fig. 2)."""
    try:
        from soft_infonce.codesearch.plotting import plot_weight_distribution
        from soft_infonce.codesearch.plotting.comparison import plot_run_comparison

        plot_run_comparison(payload, out_dir / "results.png")
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


def best_validation(trainer: Any) -> dict[str, float]:
    """The validation metrics of the checkpoint the run kept (the best one when
    ``load_best_model_at_end``, else the last evaluation)."""
    evals = [e for e in trainer.state.log_history if isinstance(e.get("eval_mrr"), (int, float))]
    if not evals:
        return {}
    best = trainer.state.best_metric
    chosen = next((e for e in evals if best is not None and e["eval_mrr"] == best), evals[-1])
    return {k: v for k, v in chosen.items() if k.startswith("eval_")}


def run_card(
    trainer: Any, model_path: str, data_args: Any, n_pairs: int, tests: dict, name: str
) -> dict[str, Any]:
    """The model card of a run's ``best/``: the trainer's facts (as its checkpoints state them)
    with the base model, the training data, the kept checkpoint's validation metrics and the
    test metrics."""
    card = trainer.model_card() | {
        "model_name": f"{name} code-search bi-encoder (soft-infonce)",
        "base_model": model_path,
        "train_data": describe_train_data(data_args, n_pairs),
        "test_metrics": tests,
    }
    validation = best_validation(trainer)
    if validation:
        card["eval_metrics"] = validation
    if data_args.data_dir:
        card["datasets"] = ["code_search_net"]
    return card


def describe_train_data(data_args: Any, n_pairs: int) -> dict[str, Any]:
    """What the card says about the training data (names, never local paths)."""
    if data_args.data_dir:
        language = Path(data_args.data_dir).name
        return {"name": f"CodeSearchNet {language} (GraphCodeBERT's code-search split)",
                "size": n_pairs}  # fmt: skip
    if data_args.code_text_file:
        return {"name": f"CodeXGLUE Code-Text file {Path(data_args.code_text_file).name}",
                "size": n_pairs}  # fmt: skip
    return {"name": "docstring -> function pairs mined from the Python standard library",
            "size": n_pairs}  # fmt: skip


def remove_checkpoints(run_dir: Path) -> int:
    """Delete a finished run's ``checkpoint-*`` folders (weights and optimizer state); its
    model lives on in ``best/``. Returns how many were removed."""
    removed = 0
    for checkpoint in sorted(run_dir.glob("checkpoint-*")):
        if checkpoint.is_dir():
            shutil.rmtree(checkpoint)
            removed += 1
    if removed:
        logger.info("%s: removed %d checkpoint(s); the model is in best/", run_dir, removed)
    return removed


def print_next_steps(saved: dict[str, str]) -> None:
    """Where the trained models are, and how to search code with one."""
    if not saved:
        return
    print("\nTrained models (each loads with BiEncoder.from_pretrained or sentence-transformers):")
    for name, path in saved.items():
        print(f"  {name:<22}{path}")
    model = list(saved.values())[-1]
    print(
        "\nSearch your own code with one (needs the search extra: pip install "
        '"soft-infonce[search]"):\n'
        f"  soft-infonce index path/to/your/code --model {model} --out code-index/\n"
        '  soft-infonce search code-index/ "read a json file" -k 5'
    )

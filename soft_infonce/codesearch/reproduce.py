"""``soft-infonce reproduce``: one language's cells of the paper's Table 1 for one encoder.

Runs the recipes ``examples/configs/<model>_<language>_<run>.json`` in the order their
estimators need: InfoNCE first (its best model is the trained-model estimator), then
Soft-InfoNCE with BM25, with the InfoNCE model, and with SimCSE when the SimCSE model of
``docs/reproducing.md`` step 2 exists. Each run is ``soft-infonce train <recipe>`` with the
data folder and output folder set, plus any further training flags given after ``--``. Then it
prints each run's test MRR beside the paper's::

    soft-infonce reproduce --language ruby --data dataset/ --model unixcoder
    soft-infonce reproduce --language ruby --data dataset/ -- --num_train_epochs 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["PAPER_TABLE_1", "RUN_ORDER", "add_parser", "paper_row", "reproduce"]

MODELS = ("codebert", "graphcodebert", "unixcoder")
LANGUAGES = ("ruby", "python", "java", "javascript", "php", "go")
#: the recipe runs, in the order their estimators need them
RUN_ORDER = ("infonce", "soft_bm25", "soft_trained", "soft_simcse")
_RUN_NAME = {"infonce": "infonce", "soft_bm25": "soft:bm25", "soft_trained": "soft:trained",
             "soft_simcse": "soft:simcse"}  # fmt: skip
#: The paper's Table 1 (test MRR, arXiv 2310.08069 v1), as transcribed in
#: docs/reproducing.md (a test checks the two agree): (model, run) -> one value per language
#: in the order of LANGUAGES.
PAPER_TABLE_1: dict[tuple[str, str], tuple[float, ...]] = {
    ("codebert", "infonce"): (0.648, 0.636, 0.663, 0.594, 0.615, 0.878),
    ("codebert", "soft_bm25"): (0.660, 0.664, 0.682, 0.600, 0.621, 0.882),
    ("codebert", "soft_trained"): (0.682, 0.675, 0.682, 0.615, 0.631, 0.898),
    ("codebert", "soft_simcse"): (0.666, 0.668, 0.670, 0.607, 0.623, 0.887),
    ("graphcodebert", "infonce"): (0.705, 0.690, 0.691, 0.647, 0.648, 0.896),
    ("graphcodebert", "soft_bm25"): (0.730, 0.697, 0.698, 0.652, 0.655, 0.892),
    ("graphcodebert", "soft_trained"): (0.719, 0.692, 0.692, 0.653, 0.648, 0.889),
    ("graphcodebert", "soft_simcse"): (0.721, 0.700, 0.702, 0.656, 0.657, 0.894),
    ("unixcoder", "infonce"): (0.740, 0.720, 0.726, 0.684, 0.676, 0.915),
    ("unixcoder", "soft_bm25"): (0.753, 0.728, 0.733, 0.693, 0.684, 0.916),
    ("unixcoder", "soft_trained"): (0.753, 0.728, 0.731, 0.694, 0.682, 0.915),
    ("unixcoder", "soft_simcse"): (0.753, 0.726, 0.731, 0.699, 0.684, 0.913),
}


def paper_row(model: str, language: str) -> dict[str, float]:
    """Run -> the paper's test MRR for one encoder and language."""
    column = LANGUAGES.index(language)
    return {run: PAPER_TABLE_1[(model, run)][column] for run in RUN_ORDER}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``reproduce`` sub-command's parser."""
    parser = commands.add_parser(
        "reproduce",
        help="run one language's Table 1 cells for one encoder and compare with the paper",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--language", required=True, choices=LANGUAGES)
    parser.add_argument(
        "--model", default="unixcoder", choices=MODELS, help="the encoder (default unixcoder)"
    )
    parser.add_argument(
        "--data",
        default="dataset",
        metavar="DIR",
        help="the dataset root holding <language>/ (soft-infonce data)",
    )
    parser.add_argument(
        "--configs",
        default="examples/configs",
        metavar="DIR",
        help="the recipes (default: examples/configs of the repository)",
    )
    parser.add_argument(
        "--output-dir",
        default="outputs",
        metavar="DIR",
        help="runs go to DIR/<model>-<language>/<run>/ (default outputs)",
    )
    parser.add_argument(
        "--runs",
        default=",".join(RUN_ORDER),
        help="which runs, comma-separated (default: all four; soft_simcse is "
        "skipped when its SimCSE model is missing)",
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: flags for every `soft-infonce train` run")  # fmt: skip
    return parser


def _plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(run, training argv) in dependency order; refuses what would fail later."""
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(RUN_ORDER))
    if unknown or not wanted:
        raise ValueError(f"--runs must name runs among {RUN_ORDER}, got {args.runs!r}")
    data = Path(args.data) / args.language
    if not (data / "train.jsonl").is_file():
        raise ValueError(
            f"--data: {data} holds no train.jsonl: prepare it with `soft-infonce data "
            f"codesearchnet --language {args.language} --out {args.data}`"
        )
    extra = [a for a in args.train_args if a != "--"]
    root = Path(args.output_dir) / f"{args.model}-{args.language}"
    plan = []
    for run in (r for r in RUN_ORDER if r in wanted):
        recipe = Path(args.configs) / f"{args.model}_{args.language}_{run}.json"
        if not recipe.is_file():
            raise ValueError(f"--configs: no recipe {recipe} (run from the repository root)")
        argv = [str(recipe), "--data_dir", str(data), "--output_dir", str(root / run)]
        if run == "soft_trained":
            if "infonce" not in wanted and not (root / "infonce" / "best").is_dir():
                best = root / "infonce" / "best"
                raise ValueError(
                    f"soft_trained needs the InfoNCE model {best}: add infonce to --runs"
                )
            argv += ["--estimator_model", str(root / "infonce" / "best")]
        if run == "soft_simcse":
            simcse = json.loads(recipe.read_text(encoding="utf-8")).get("estimator_model")
            if simcse and not Path(simcse).is_dir() and "--estimator_model" not in extra:
                print(f"soft_simcse skipped: its SimCSE model {simcse} is missing "
                      "(docs/reproducing.md, step 2)")  # fmt: skip
                continue
        plan.append((run, argv + extra))
    return plan


def test_mrr(output_dir: Path, run: str) -> float | None:
    """A finished run's test MRR from its ``results.json`` (None when it has none)."""
    try:
        results = json.loads((output_dir / "results.json").read_text(encoding="utf-8"))
        return float(results["runs"][_RUN_NAME[run]]["test"]["test"]["mrr"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def format_table(model: str, language: str, ours: dict[str, float | None]) -> str:
    """Our test MRR beside the paper's, one line per run."""
    paper = paper_row(model, language)
    lines = [f"{model} on {language}: test MRR", f"{'run':<14}{'ours':>8}{'paper':>8}{'diff':>8}"]
    for run, value in ours.items():
        mine = "-" if value is None else f"{value:.3f}"
        diff = "-" if value is None else f"{value - paper[run]:+.3f}"
        lines.append(f"{run:<14}{mine:>8}{paper[run]:>8.3f}{diff:>8}")
    return "\n".join(lines)


def reproduce(args: argparse.Namespace) -> int:
    """Run the planned recipes one after the other, then print the comparison."""
    from soft_infonce.codesearch.train import main as train

    plan = _plan(args)
    root = Path(args.output_dir) / f"{args.model}-{args.language}"
    for run, argv in plan:
        print(f"== {run}: soft-infonce train {' '.join(argv)}", flush=True)
        train(argv, prog=f"soft-infonce reproduce ({run})")
    ours = {run: test_mrr(root / run, run) for run, _ in plan}
    print("\n" + format_table(args.model, args.language, ours))
    return 0

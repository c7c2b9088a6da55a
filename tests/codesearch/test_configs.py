"""The Table 1 recipes in examples/configs/: they parse with run_codesearch.py's own dataclasses,
carry the paper's settings, chain their runs, and cover 3 models x 6 languages x 4 runs.

Expected values are transcribed here from the sources (the paper's Table 6 and 7 and Section 5;
the README and code of github.com/Alex-HaochenLi/Soft-InfoNCE), not read from the generator.
Nothing is trained.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "examples" / "configs"
CONFIG_PATHS = sorted(CONFIG_DIR.glob("*.json"))
MODELS = ("codebert", "graphcodebert", "unixcoder")
LANGUAGES = ("ruby", "python", "java", "javascript", "php", "go")
RUNS = ("infonce", "soft_bm25", "soft_simcse", "soft_trained")

#: From the repository's README commands and model code.
EXPECTED_MODEL = {
    "codebert": {
        "model_name_or_path": "microsoft/codebert-base",
        "pooling": "pooler",
        "input_layout": "plain",
        "max_query_length": 200,
        "max_code_length": 200,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 100,
        "learning_rate": 1e-6,
    },
    "graphcodebert": {
        "model_name_or_path": "microsoft/graphcodebert-base",
        "pooling": "pooler",
        "input_layout": "graphcodebert",
        "max_query_length": 128,
        "max_code_length": 256,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "learning_rate": 2e-5,
    },
    "unixcoder": {
        "model_name_or_path": "microsoft/unixcoder-base",
        "pooling": "mean",
        "input_layout": "unixcoder",
        "max_query_length": 128,
        "max_code_length": 256,
        "per_device_train_batch_size": 64,
        "per_device_eval_batch_size": 64,
        "learning_rate": 2e-5,
    },
}
#: The paper's Table 7: (alpha, beta, t).
TABLE_7 = {"bm25": (1.5, 0.5, 1.0), "simcse": (1.3, 0.7, 0.1), "trained": (1.3, 0.7, 5.0)}
#: The paper's Table 6: training pairs per language.
TRAIN_PAIRS = {
    "ruby": 24_927,
    "python": 251_820,
    "java": 164_923,
    "javascript": 58_025,
    "php": 241_241,
    "go": 167_288,
}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    """The training command's argument classes and run parser (the example script wraps it)."""
    from soft_infonce.codesearch.train import arguments, checks

    return types.SimpleNamespace(**{**vars(arguments), "parse_runs": checks.parse_runs})


@pytest.fixture(scope="module")
def parsed(script) -> dict[str, tuple]:
    """Every config parsed as the script parses a single .json argument."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        (script.ModelArguments, script.DataArguments, script.CodeSearchTrainingArguments)
    )
    return {path.stem: parser.parse_json_file(path) for path in CONFIG_PATHS}


def _split(stem: str) -> tuple[str, str, str]:
    model, lang, run = stem.split("_", 2)
    return model, lang, run


def test_configs_cover_the_grid_and_nothing_else() -> None:
    expected = {f"{m}_{lang}_{r}" for m in MODELS for lang in LANGUAGES for r in RUNS}
    assert len(expected) == 72
    assert {p.stem for p in CONFIG_PATHS} == expected


def test_committed_files_are_what_the_generator_writes() -> None:
    generator = _load("make_configs_under_test", CONFIG_DIR / "make_configs.py")
    assert generator.main(["--check"]) == 0
    for path in CONFIG_PATHS:  # and they are plain JSON objects
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


def test_every_config_parses_without_unknown_keys(parsed) -> None:
    assert len(parsed) == 72
    for stem, (model_args, data_args, training_args) in parsed.items():
        model, lang, _ = _split(stem)
        assert model_args.model_name_or_path == EXPECTED_MODEL[model]["model_name_or_path"]
        assert Path(data_args.data_dir).parts[-1] == lang, stem
        assert training_args.__class__.__name__ == "CodeSearchTrainingArguments"


@pytest.mark.parametrize("model", MODELS)
def test_model_settings_follow_the_papers_code(parsed, model: str) -> None:
    for lang in LANGUAGES:
        for run in RUNS:
            model_args, _, args = parsed[f"{model}_{lang}_{run}"]
            expected = EXPECTED_MODEL[model]
            got = {
                "model_name_or_path": model_args.model_name_or_path,
                "pooling": model_args.pooling,
                "input_layout": model_args.input_layout,
                "max_query_length": args.max_query_length,
                "max_code_length": args.max_code_length,
                "per_device_train_batch_size": args.per_device_train_batch_size,
                "per_device_eval_batch_size": args.per_device_eval_batch_size,
                "learning_rate": args.learning_rate,
            }
            assert got == expected, (lang, run)
            # Raw dot products of the pooled vectors, as the three models' Soft-InfoNCE code.
            assert (model_args.normalize, model_args.model_scale) == (False, 1.0)
            assert args.num_train_epochs == 30 and args.max_steps == -1
            assert args.seed == 123456
            assert (args.weight_decay, args.adam_epsilon, args.max_grad_norm) == (0.0, 1e-8, 1.0)
            assert args.lr_scheduler_type.value == "linear"


def test_codebert_warms_up_for_one_epoch_and_the_others_not_at_all(parsed) -> None:
    for stem, (_, _, args) in parsed.items():
        model, lang, _ = _split(stem)
        per_epoch = math.ceil(TRAIN_PAIRS[lang] / args.per_device_train_batch_size)
        warmup = args.get_warmup_steps(per_epoch * 30)
        if model == "codebert":
            assert abs(warmup - per_epoch) <= 1, stem
        else:
            assert warmup == 0, stem


def test_model_selection_on_validation_every_epoch(parsed) -> None:
    for stem, (_, _, args) in parsed.items():
        assert args.eval_strategy.value == "epoch", stem
        assert args.save_strategy.value == "epoch", stem
        assert args.load_best_model_at_end and args.metric_for_best_model == "mrr", stem
        assert args.greater_is_better, stem


def test_each_config_is_one_run_matching_its_loss_fields(parsed, script) -> None:
    for stem, (_, data_args, args) in parsed.items():
        _, _, run = _split(stem)
        runs = script.parse_runs(data_args.runs)
        assert len(runs) == 1, stem
        loss, estimator = runs[0]
        assert loss == args.loss
        if run == "infonce":
            assert (data_args.runs, args.loss) == ("infonce", "infonce")
        else:
            assert data_args.runs == f"soft:{run.removeprefix('soft_')}"
            assert (args.loss, args.estimator) == ("soft", estimator)


def test_soft_runs_carry_the_table_7_presets(parsed) -> None:
    from soft_infonce.losses import PRESETS

    for stem, (_, _, args) in parsed.items():
        _, _, run = _split(stem)
        if run == "infonce":
            continue
        estimator = run.removeprefix("soft_")
        assert (args.alpha, args.beta, args.temperature) == TABLE_7[estimator], stem
        assert args.min_weight == 0.1, stem
        assert TABLE_7[estimator] == PRESETS[estimator]  # the library agrees with the paper


def test_estimator_models_point_where_earlier_steps_save(parsed, script) -> None:
    simcse_paths = set()
    for stem, (_, _, args) in parsed.items():
        model, lang, run = _split(stem)
        if run == "soft_trained":
            _, _, infonce_args = parsed[f"{model}_{lang}_infonce"]
            # run_codesearch.py saves a single run's best model in <output_dir>/best.
            ((loss, _),) = script.parse_runs(parsed[f"{model}_{lang}_infonce"][1].runs)
            assert loss == "infonce"
            saved = Path(infonce_args.output_dir) / "best"
            assert Path(args.estimator_model) == saved, stem
            assert saved.as_posix() == f"outputs/{model}-{lang}/infonce/best"
        elif run == "soft_simcse":
            simcse_paths.add(args.estimator_model)
        else:
            assert args.estimator_model is None, stem
    assert simcse_paths == {"outputs/simcse/final"}  # one model for all languages (Section 5)


def test_every_run_writes_to_its_own_folder(parsed) -> None:
    folders = [args.output_dir for _, _, args in parsed.values()]
    assert len(set(folders)) == 72
    for stem, (_, _, args) in parsed.items():
        model, lang, run = _split(stem)
        assert args.output_dir == f"outputs/{model}-{lang}/{run.replace('_', '-')}"


def test_graphcodebert_recipes_feed_the_data_flow(parsed) -> None:
    for stem, (model, _, _) in parsed.items():
        if stem.startswith("graphcodebert"):
            lang = stem.split("_")[1]
            assert (model.input_layout, model.language, model.data_flow_length) == (
                "graphcodebert",
                lang,
                64,
            )  # GraphCodeBERT's code-search setting
        else:
            assert model.input_layout != "graphcodebert"


def test_readme_gpu_hour_table_matches_the_generator() -> None:
    generator = _load("make_configs_under_test", CONFIG_DIR / "make_configs.py")
    readme = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    assert generator.estimate_table() in readme
    # Spot check of the arithmetic: UniXcoder Ruby InfoNCE, by hand.
    steps = 30 * math.ceil(24_927 / 64)
    train_s = steps * 0.75 * (64 * 384) / 12_800
    eval_s = 30 * (1_400 * 128 + 4_360 * 256) * 0.75 / 12_800 / 3
    assert generator.estimate_gpu_hours("unixcoder", "ruby", "infonce") == pytest.approx(
        (train_s + eval_s) / 3600
    )

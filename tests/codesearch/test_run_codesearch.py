"""examples/run_codesearch.py itself: kill and resume, checks before any work, results kept.

A tiny random BERT is built from a config into a temp folder and trained on a small synthetic
Code-Text file, so each invocation takes seconds. The kill is a real SIGKILL that the process
sends itself while writing a checkpoint (after the model, optimizer and RNG files, before
``trainer_state.json``): a deterministic point in the middle of a write.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("datasets")
from helpers.tiny_vocab import bert_vocab  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "run_codesearch.py"
VERBS = "read write sort parse open close load save split join count find".split()
NOUNS = "file list json string number line table key value path url name".split()

RUNNER = """
import os, runpy, signal, sys
from transformers.trainer_callback import TrainerState

original = TrainerState.save_to_json

def save_to_json(self, json_path):
    kill_at = os.environ.get("KILL_AT")
    if kill_at and str(json_path).endswith(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)  # mid-write: trainer_state.json comes last
    return original(self, json_path)

TrainerState.save_to_json = save_to_json
script = sys.argv.pop(1)
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("codesearch")
    words = [f"v{i}" for i in range(len(VERBS))] + [f"n{i}" for i in range(len(NOUNS))]
    vocab = bert_vocab(*VERBS, *NOUNS, *words)
    model_dir = root / "tiny"
    model_dir.mkdir()
    (root / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(str(root / "vocab.txt")).save_pretrained(model_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=40,
    )
    BertModel(config).save_pretrained(model_dir)
    rng = random.Random(0)
    rows = []
    for i in range(120):
        verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
        code = f"def v{VERBS.index(verb)} _ n{NOUNS.index(noun)} ( x ) : return x".split()
        rows.append({"url": f"u{i}", "docstring_tokens": [verb, "a", noun], "code_tokens": code})
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = root / "runner.py"
    runner.write_text(RUNNER)
    return {"root": root, "model": model_dir, "data": data, "runner": runner}


def arguments(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(setup["model"]), "--code_text_file", str(setup["data"]),
        "--output_dir", str(out), "--runs", "infonce,soft:bm25",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32",
        "--max_steps", "8", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "2",
        "--warmup_steps", "0", "--learning_rate", "1e-3", "--max_query_length", "8",
        "--max_code_length", "16", "--use_cpu", "--disable_tqdm", "true", "--report_to", "none",
        "--seed", "3", "--dataloader_num_workers", "0", *extra,
    ]  # fmt: skip


def run_script(setup, args: list[str], kill_at: str | None = None, timeout: float = 400):
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("KILL_AT", None)
    if kill_at:
        env["KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, str(setup["runner"]), str(SCRIPT), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["runs"]


@pytest.mark.slow
def test_kill_mid_checkpoint_then_resume_matches_an_uninterrupted_run(setup):
    full = setup["root"] / "full"
    done = run_script(setup, arguments(setup, full))
    assert done.returncode == 0, done.stderr[-3000:]

    out = setup["root"] / "killed"
    # SIGKILL while the second run writes checkpoint-6: its weights, optimizer and RNG files
    # exist, its trainer_state.json does not.
    killed = run_script(
        setup, arguments(setup, out), kill_at="soft-bm25/checkpoint-6/trainer_state.json"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    half = out / "soft-bm25" / "checkpoint-6"
    assert (half / "model.safetensors").is_file() and not (half / "trainer_state.json").exists()
    kept = results(out)  # written after each run: the finished one survived the kill
    assert set(kept) == {"zero-shot", "infonce"}
    assert kept["infonce"]["test"] == results(full)["infonce"]["test"]

    resumed = run_script(setup, arguments(setup, out, "--resume_from_checkpoint"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "is incomplete, not resuming from it" in resumed.stderr
    got, want = results(out), results(full)
    assert got["soft:bm25"]["resumed_from"] == str(out / "soft-bm25" / "checkpoint-4")
    assert got["infonce"]["reused"]  # finished before the kill: kept, not trained again
    assert (out / "soft-bm25" / "incomplete-checkpoint-6").is_dir()  # set aside, not deleted
    for name in ("zero-shot", "infonce", "soft:bm25"):
        assert got[name]["test"] == want[name]["test"], name
    for name in ("infonce", "soft:bm25"):
        assert got[name]["best_valid_mrr"] == want[name]["best_valid_mrr"], name
        evals = [h for h in want[name]["history"] if "eval_mrr" in h]
        assert [h for h in got[name]["history"] if "eval_mrr" in h] == evals, name
    assert want["soft:bm25"]["resumed_from"] is None
    assert (out / "results.png").is_file() or "matplotlib is missing" in resumed.stderr


@pytest.fixture(scope="module")
def script():
    """The module holding ``main`` and ``load_data`` (the example script wraps it)."""
    return importlib.import_module("soft_infonce.codesearch.train.runs")


def test_a_training_set_smaller_than_a_batch_is_refused_before_any_work(setup, script):
    out = setup["root"] / "small"
    with pytest.raises(SystemExit, match="the training set has 5 pairs, fewer than one batch of 8"):
        script.main(arguments(setup, out, "--max_train_pairs", "5"))
    assert not (out / "results.json").exists()  # nothing was evaluated or trained
    with pytest.raises(SystemExit, match="--max_train_pairs must be >= 1 or unset, got 0"):
        script.main(arguments(setup, out, "--max_train_pairs", "0"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runs", "infonce,soft:bm52"], "--runs: 'soft:bm52': estimator must be one of"),
        (["--runs", "infonce,sfot:bm25"], "--runs: 'sfot:bm25': the loss must be one of"),
        (["--runs", "infonce,soft:bm25,infonce"], "'infonce' is named twice"),
        (["--runs", "soft:trained"], "the trained estimator needs --estimator_model"),
        (["--runs", "infonce,soft:simcse", "--estimator_model", "/no/such/model"],
         "--estimator_model must be an existing folder"),
        (["--cosqa_dir", "/no/such/cosqa"], "--cosqa_dir's cosqa-retrieval-dev-500.json"),
        (["--model_name_or_path", "/no/such/model"], "--model_name_or_path must be an existing"),
        (["--resume_from_checkpoint", "/no/such/checkpoint-4"], "cannot be resumed: not a folder"),
        (["--max_valid_pairs", "0"], "--max_valid_pairs must be >= 1"),
        (["--hard_negatives", "bm25:0"], "--hard_negatives must be METHOD:K with METHOD bm25"),
        (["--hard_negatives", "sparse:3"], "or dense and K >= 1 (e.g. bm25:3), got 'sparse:3'"),
        (["--hard_negatives", "bm25:2", "--hard_negatives_relative_margin", "1.5"],
         "--hard_negatives_relative_margin must be in [0, 1), got 1.5"),
    ],
)  # fmt: skip
def test_every_run_and_path_is_checked_before_the_zero_shot_evaluation(
    setup, script, monkeypatch, extra, message
):
    def no_work(*args, **kwargs):
        raise AssertionError("data were loaded before the checks")

    monkeypatch.setattr(script, "load_data", no_work)
    out = setup["root"] / "bad"
    with pytest.raises(SystemExit, match=re.escape(message)):
        script.main(arguments(setup, out, *extra))
    assert not (out / "results.json").exists()


def test_bare_resume_flag_and_config_values_mean_the_last_checkpoint(script, tmp_path):
    _, _, args = script.parse_args(["--output_dir", str(tmp_path), "--resume_from_checkpoint"])
    assert args.resume_from_checkpoint == "auto"
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps({"runs": "infonce", "resume_from_checkpoint": True}))
    _, _, args = script.parse_args([str(config), "--output_dir", str(tmp_path)])
    assert args.resume_from_checkpoint == "auto"


def test_invalid_json_in_a_config_file_names_the_file_and_line(script, tmp_path):
    config = tmp_path / "recipe.json"
    config.write_text('{\n  "runs": "infonce",\n  "max_steps": 8,,\n}\n')
    with pytest.raises(SystemExit, match=re.escape(f"{config}:3: invalid JSON")):
        script.parse_args([str(config)])
    config.write_text('{"runs": "infonce", "max_stepz": 8}')
    with pytest.raises(SystemExit, match=re.escape("keys the script does not know: ['max_stepz']")):
        script.parse_args([str(config)])
    config.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="expected an object of settings, got list"):
        script.parse_args([str(config)])


def test_config_values_of_the_wrong_kind_name_the_file_and_key(script, tmp_path, capsys):
    config = tmp_path / "recipe.json"
    for key, value, expected in [
        ("max_steps", 1.5, "'max_steps' must be int, got 1.5"),
        ("max_steps", True, "'max_steps' must be int, got True"),
        ("normalize", 1, "'normalize' must be bool, got 1"),
        ("learning_rate", [1], "'learning_rate' must be float, got [1]"),
        ("eval_strategy", "sometimes", "'eval_strategy' must be one of ['no', 'steps', 'epoch']"),
    ]:
        config.write_text(json.dumps({key: value}))
        with pytest.raises(SystemExit, match=re.escape(f"{config}: {expected}")):
            script.parse_args([str(config)])
    config.write_text(json.dumps({"learning_rate": "fast"}))  # a string: argparse converts it
    with pytest.raises(SystemExit):
        script.parse_args([str(config)])
    assert "--learning_rate/--learning-rate: invalid float value: 'fast'" in capsys.readouterr().err


def test_every_shipped_recipe_passes_the_checks(script):
    for path in sorted((ROOT / "examples" / "configs").glob("*.json")):
        model_args, data_args, args = script.parse_args([str(path)])
        assert data_args.runs and args.output_dir.startswith("outputs/"), path


def test_hard_negatives_are_mined_before_training_and_every_batch_carries_them(
    setup, script, monkeypatch
):
    """--hard_negatives bm25:2: each training batch holds N queries and N (1 + 2) codes, the
    mined negatives are never the row's own code, and results.json says what was mined."""
    from soft_infonce.integrations.hf.collator import BiEncoderCollator

    seen: list[tuple[int, int, bool]] = []
    collate = BiEncoderCollator.__call__

    def spy(self, features):
        batch = collate(self, features)
        if "negatives" in features[0]:
            own = all(f["code"] not in f["negatives"] for f in features)
            seen.append((len(batch["queries"]), len(batch["codes"]), own))
        return batch

    monkeypatch.setattr(BiEncoderCollator, "__call__", spy)
    out = setup["root"] / "hard"
    extra = ("--runs", "infonce", "--max_steps", "4", "--hard_negatives", "bm25:2")
    script.main(arguments(setup, out, *extra))
    assert seen and {(q, c) for q, c, _ in seen} == {(8, 24)}
    assert all(own for _, _, own in seen)
    payload = json.loads((out / "results.json").read_text())
    mined = payload["hard_negatives"]
    assert (mined["method"], mined["k"]) == ("bm25", 2)
    assert mined["rows_kept"] == payload["data_sizes"]["train"] <= mined["pairs"]
    assert payload["config"]["data"]["hard_negatives"] == "bm25:2"


WEIGHTS_MODULE = '''
import torch

from soft_infonce.estimators import WeightEstimator


class LengthEstimator(WeightEstimator):
    """Longer candidates look more relevant: a user's estimator outside the library."""

    def __init__(self, max_code_length: int = 256) -> None:
        self.max_code_length = max_code_length

    def similarity(self, queries, codes, candidate_queries=None):
        return torch.tensor([[float(len(c)) for c in codes]] * len(queries))
'''


def test_each_run_trains_with_the_estimator_it_names(setup, tmp_path, monkeypatch) -> None:
    """``--runs soft:uniform`` trains with UniformEstimator (the default --estimator bm25 does
    not win), and ``soft:module:Class`` imports the user's estimator, given its lengths."""
    from soft_infonce.codesearch.train import runs
    from soft_infonce.estimators import UniformEstimator

    (tmp_path / "user_weights.py").write_text(WEIGHTS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    used = []
    original = runs.SoftInfoNCETrainer.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        used.append(self.loss_fn.estimator)

    monkeypatch.setattr(runs.SoftInfoNCETrainer, "__init__", spy)
    spec = "soft:uniform,soft:user_weights:LengthEstimator"
    runs.main([*arguments(setup, tmp_path / "out"), "--runs", spec, "--max_steps", "2"])
    assert [type(e).__name__ for e in used] == ["UniformEstimator", "LengthEstimator"]
    assert isinstance(used[0], UniformEstimator)
    assert used[1].max_code_length == 16  # the command's --max_code_length reached it
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {"soft:uniform", "soft:user_weights:LengthEstimator"} < set(results["runs"])


def test_loss_and_estimator_flags_that_disagree_with_runs_are_refused(setup) -> None:
    from soft_infonce.codesearch.train.arguments import parse_args
    from soft_infonce.codesearch.train.checks import plan_runs

    with pytest.raises(SystemExit, match="--loss 'soft' disagrees with --runs"):
        parse_args(["--loss", "soft", "--estimator", "uniform", "--runs", "infonce,soft:bm25"])
    with pytest.raises(SystemExit, match="--estimator 'uniform' disagrees with --runs"):
        parse_args(["--estimator", "uniform", "--runs", "soft:bm25"])
    with pytest.raises(SystemExit, match="--loss 'bce' disagrees"):
        parse_args(["--loss=bce", "--runs", "soft:bm25"])
    parsed = parse_args(["--loss", "soft", "--estimator", "uniform", "--runs", "soft:uniform"])
    assert parsed[1].runs == "soft:uniform"  # agreeing flags are accepted
    model_args, data_args, args = parse_args(
        ["--estimator_model", str(setup["model"]), "--runs", "infonce,soft:bm25"]
    )
    with pytest.raises(SystemExit, match="--estimator_model .* is used by none of --runs"):
        plan_runs(model_args, data_args, args)

"""``soft-infonce train`` refuses, before any work, a batch too small for a run's Eq. 4 weights."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from soft_infonce.codesearch.train.arguments import parse_args  # noqa: E402
from soft_infonce.codesearch.train.checks import plan_runs  # noqa: E402


def _plan(tmp_path: Path, *extra: str) -> list:
    return plan_runs(*parse_args(["--output_dir", str(tmp_path / "out"), *extra]))


def test_the_default_runs_refuse_a_batch_of_four(tmp_path: Path) -> None:
    message = (
        r"--runs: 'soft:bm25': --per_device_train_batch_size 4 gives 4 candidates per query, "
        r"but Soft-InfoNCE with alpha=1.5 and beta=0.5 needs at least 5 .*batch of at least 5"
    )
    with pytest.raises(SystemExit, match=message):
        _plan(tmp_path, "--per_device_train_batch_size", "4")


@pytest.mark.parametrize(
    "extra",
    [("--per_device_train_batch_size", "5"),
     ("--per_device_train_batch_size", "4", "--hard_negatives", "bm25:1"),
     ("--per_device_train_batch_size", "4", "--runs", "infonce,soft:uniform", "--alpha", "1.0"),
     ("--per_device_train_batch_size", "2", "--runs", "infonce")],
)  # fmt: skip
def test_batches_that_give_enough_candidates_are_accepted(tmp_path: Path, extra) -> None:
    assert _plan(tmp_path, *extra)

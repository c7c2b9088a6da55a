"""``soft-infonce train --runs ...,soft:pa-guide``: the guide defaults to the base model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from soft_infonce.codesearch.train.arguments import parse_args  # noqa: E402
from soft_infonce.codesearch.train.checks import default_model_path, plan_runs  # noqa: E402


def _plan(tmp_path: Path, *extra: str) -> dict[str, str | None]:
    planned = plan_runs(*parse_args(["--output_dir", str(tmp_path / "out"), *extra]))
    return {run.name: run_args.estimator_model for run, run_args in planned}


def test_pa_guide_defaults_to_the_offline_base_model(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="soft_infonce.codesearch.train"):
        guides = _plan(tmp_path, "--runs", "infonce,soft:pa-guide")
    base = default_model_path()
    assert guides == {"infonce": None, "soft:pa-guide": base}
    assert f"pa-guide estimator: the guide is the frozen base model {base}" in caplog.text


def test_pa_guide_follows_model_name_or_path_and_an_explicit_estimator_model_wins(
    tmp_path: Path,
) -> None:
    base, other = tmp_path / "base", tmp_path / "other"
    base.mkdir()
    other.mkdir()  # the plan checks folders; nothing is loaded before training
    runs = ("--runs", "infonce,soft:pa-guide,soft:bm25")
    guides = _plan(tmp_path, "--model_name_or_path", str(base), *runs)
    assert guides == {"infonce": None, "soft:pa-guide": str(base), "soft:bm25": None}
    guides = _plan(
        tmp_path, "--model_name_or_path", str(base), "--estimator_model", str(other), *runs
    )
    assert guides["soft:pa-guide"] == str(other)


def test_an_estimator_model_no_run_reads_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(
        SystemExit, match="is used by none of --runs .*simcse, pa-guide and trained"
    ):
        _plan(tmp_path, "--estimator_model", str(tmp_path), "--runs", "infonce,soft:pa-bm25")

"""The training command as a package (``soft_infonce.codesearch.train``): a light import, the same
objects
behind ``examples/run_codesearch.py``, and data paths read as given, not beside a checkout."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code_or_args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_importing_the_training_package_stays_light(tmp_path) -> None:
    done = _python(
        ["-c", "import sys, soft_infonce.codesearch.train; print('transformers' in sys.modules)"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_example_script_wraps_the_package() -> None:
    import soft_infonce.codesearch.train as package

    spec = importlib.util.spec_from_file_location(
        "run_codesearch_wrapper", ROOT / "examples" / "run_codesearch.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main is package.main


def test_a_missing_data_folder_names_its_flag_from_any_directory(tmp_path) -> None:
    """Run from outside the checkout: a relative --data_dir is read from the working directory
    and, when absent, refused before any work with the flag's name (exit status 1)."""
    done = _python(
        ["-m", "soft_infonce.codesearch", "train", "--data_dir", "dataset/ruby"], tmp_path
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "--data_dir's train.jsonl must be an existing file, got 'dataset/ruby/train.jsonl'" in (
        done.stderr
    )
    assert not (tmp_path / "outputs").exists()

"""Issue 12, 6: mining never hangs and never dies on one bad file; a str is one path.

A FIFO named ``*.py`` (a read would block forever), a link loop, a link to ``/dev/zero`` (a read
never ends), files that make ``ast`` raise ``MemoryError`` / ``RecursionError``: each is
skipped and counted under its reason, and the good files are still mined.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from soft_infonce.codesearch.data.files import Skipped, as_paths, iter_source_files, read_source
from soft_infonce.codesearch.data.mining import mine_pairs

GOOD = 'def work(x):\n    """Do the work here now."""\n    y = x\n    return y\n'
posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs and /dev/zero are POSIX")


def run_with_timeout(function, seconds: float = 60.0):
    """``function()`` in a daemon thread; fails the test instead of hanging it."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (a hang)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def unblock(fifo: Path) -> None:
    """Opening the writing end releases a reader blocked in open() (if any)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no reader waiting
    os.close(fd)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "good.py").write_text(GOOD, encoding="utf-8")
    os.mkfifo(root / "x.py")
    (root / "loop.py").symlink_to(root / "loop.py")  # a link to itself
    (root / "zero.py").symlink_to("/dev/zero")
    (root / "dangling.py").symlink_to(root / "missing.py")
    # ast.parse raises MemoryError (a long chain of unary minus) and RecursionError (a long
    # chain of additions) on CPython 3.11; either way the file is "not parseable".
    (root / "unary.py").write_text(GOOD + "x = " + "-" * 100_000 + "1\n", encoding="utf-8")
    (root / "sum.py").write_text(GOOD + "y = " + "+".join(["1"] * 200_000) + "\n")
    (root / "linked_dir").symlink_to(root, target_is_directory=True)  # a folder loop
    return root


@posix_only
def test_hostile_files_are_skipped_and_counted_never_fatal(hostile: Path, caplog):
    try:
        with caplog.at_level(logging.WARNING):
            splits = run_with_timeout(
                lambda: mine_pairs(
                    str(hostile), valid_fraction=0, test_fraction=0, show_progress=False
                )
            )
    finally:
        unblock(hostile / "x.py")
    assert splits["train"]["name"] == ["work"]
    assert [Path(p).name for p in splits["train"]["path"]] == ["good.py"]
    assert "skipped 6 of" in caplog.text
    assert "4 not a regular file" in caplog.text  # x.py, loop.py, zero.py, dangling.py
    assert "2 not parseable" in caplog.text  # unary.py, sum.py


@posix_only
def test_iter_source_files_counts_each_reason(hostile: Path):
    skipped = Skipped()
    try:
        files = run_with_timeout(lambda: list(iter_source_files(hostile, skipped=skipped)))
    finally:
        unblock(hostile / "x.py")
    assert sorted(p.name for p in files) == ["good.py", "sum.py", "unary.py"]
    assert skipped.counts == {"not a regular file": 4}
    # the first three in walk order (sorted names)
    names = [Path(p).name for p in skipped.examples["not a regular file"]]
    assert names == ["dangling.py", "loop.py", "x.py"]


@posix_only
def test_read_source_refuses_fifos_and_devices_without_blocking(hostile: Path):
    from soft_infonce.codesearch.data.files import SourceFileError

    try:
        for name in ("x.py", "zero.py", "loop.py"):
            with pytest.raises(SourceFileError, match="not a regular file"):
                run_with_timeout(lambda name=name: read_source(hostile / name), 20)
    finally:
        unblock(hostile / "x.py")
    big = hostile / "big.py"
    big.write_bytes(b"#" * 101)
    with pytest.raises(SourceFileError, match="too large"):
        read_source(big, max_bytes=100)


@posix_only
def test_a_fifo_given_explicitly_is_skipped_not_read(hostile: Path):
    try:
        with pytest.raises(ValueError, match="no pairs could be mined from 0 files"):
            run_with_timeout(lambda: mine_pairs(hostile / "x.py", show_progress=False))
    finally:
        unblock(hostile / "x.py")


def test_a_plain_string_is_one_path_never_its_characters(tmp_path: Path):
    (tmp_path / "good.py").write_text(GOOD, encoding="utf-8")
    assert as_paths(str(tmp_path)) == [tmp_path]
    assert as_paths(tmp_path) == [tmp_path]
    splits = run_with_timeout(
        lambda: mine_pairs(str(tmp_path), valid_fraction=0, test_fraction=0, show_progress=False)
    )
    assert splits["train"]["name"] == ["work"]
    with pytest.raises(ValueError, match="paths must be existing files or folders"):
        mine_pairs("/no/such/folder", show_progress=False)
    with pytest.raises(TypeError, match="bytes"):
        as_paths(b"/tmp")
    with pytest.raises(TypeError, match="int"):
        as_paths([tmp_path, 3])


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"valid_fraction": "0.1"}, TypeError, "valid_fraction"),
        ({"test_fraction": float("nan")}, ValueError, "test_fraction"),
        ({"min_doc_tokens": 2.5}, TypeError, "min_doc_tokens"),
        ({"max_files": True}, TypeError, "max_files"),
        ({"max_code_tokens": 10.0}, TypeError, "max_code_tokens"),
        ({"min_code_lines": -1}, ValueError, "min_code_lines"),
    ],
)
def test_mining_arguments_of_the_wrong_kind_are_named(tmp_path: Path, kwargs, error, name):
    (tmp_path / "good.py").write_text(GOOD, encoding="utf-8")
    with pytest.raises(error, match=name):
        mine_pairs(tmp_path, show_progress=False, **kwargs)


def test_suffixes_as_one_string_is_one_ending(tmp_path: Path):
    (tmp_path / "a.py").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.p").write_text(GOOD, encoding="utf-8")  # ".p" is a substring of ".py"
    skipped = Skipped()
    names = [p.name for p in iter_source_files([tmp_path / "b.p"], ".py", skipped=skipped)]
    assert names == [] and skipped.counts == {"not a source file": 1}
    assert [p.name for p in iter_source_files(tmp_path, ".py")] == ["a.py"]


def test_a_file_failing_during_extraction_is_counted_and_the_rest_mined(
    tmp_path, monkeypatch, caplog
):
    from soft_infonce.codesearch.data import mining

    (tmp_path / "a.py").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.py").write_text(GOOD.replace("work", "labour"), encoding="utf-8")
    original = mining._code_without_docstring

    def fragile(lines, node):
        if node.name == "labour":
            raise RecursionError("maximum recursion depth exceeded")
        return original(lines, node)

    monkeypatch.setattr(mining, "_code_without_docstring", fragile)
    with caplog.at_level(logging.WARNING):
        splits = mine_pairs(tmp_path, valid_fraction=0, test_fraction=0, show_progress=False)
    assert splits["train"]["name"] == ["work"]
    assert "1 not minable (RecursionError)" in caplog.text

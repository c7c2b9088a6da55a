"""The saved index as a unit: atomic replacement, checksums, every corrupt part named, the
model that built it compared, and the command line's one-line errors."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("faiss")
pytest.importorskip("transformers")

from helpers.search_fixtures import make_repository, save_tiny_model  # noqa: E402

from soft_infonce.codesearch.cli import main  # noqa: E402
from soft_infonce.codesearch.search import (
    CodeIndex,  # noqa: E402
    storage,  # noqa: E402
)
from soft_infonce.codesearch.search._faiss import import_faiss  # noqa: E402
from soft_infonce.codesearch.search.manifest import IndexFolderError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

OLD_TEXTS = [
    "def load ( path ) : return json . load ( open ( path ) )",
    "def sort ( x ) : return x",
]
NEW_TEXTS = ["def total ( x ) : return sum ( x )", "def get ( d , k ) : return d . get ( k )",
             "def split ( s ) : return s . split ( )"]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def saved(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = CodeIndex(model_dir, show_progress=False)
    index.add_texts(OLD_TEXTS + NEW_TEXTS, names=[f"f{i}" for i in range(5)])
    return index.save(tmp_path_factory.mktemp("saved") / "index")


def _texts(folder: Path) -> list[str]:
    return [r["text"] for r in CodeIndex.load(folder, load_model=False).records]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even ``except Exception``)."""


def _kill_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[str]:
    """Make the ``step``-th file-system operation of a save raise :class:`Killed`."""
    done: list[str] = []

    def wrap(name: str, function: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            if len(done) == step:
                raise Killed(name)
            done.append(name)
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(storage, "_write_text", wrap("write", storage._write_text))
    monkeypatch.setattr(os, "replace", wrap("replace", os.replace))
    monkeypatch.setattr(shutil, "rmtree", wrap("rmtree", shutil.rmtree))
    faiss = import_faiss()
    monkeypatch.setattr(faiss, "write_index", wrap("write_index", faiss.write_index))
    return done


@pytest.mark.parametrize("step", range(8))
def test_a_killed_save_leaves_the_old_or_the_new_index(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    out = tmp_path / "index"
    old = CodeIndex(model_dir, show_progress=False)
    old.add_texts(OLD_TEXTS)
    old.save(out)
    new = CodeIndex(model_dir, show_progress=False)
    new.add_texts(NEW_TEXTS)
    with monkeypatch.context() as patch:
        done = _kill_at(patch, step)
        try:
            new.save(out)
            killed = False
        except Killed:
            killed = True
    assert _texts(out) in (OLD_TEXTS, NEW_TEXTS)  # never a mix of the two
    if not killed:  # the save finished before the step: it is the new one, nothing left over
        assert len(done) <= step and _texts(out) == NEW_TEXTS
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    # The next save completes and cleans up what the killed one left.
    new.save(out)
    assert _texts(out) == NEW_TEXTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_every_step_of_a_save_was_interrupted(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parametrised kill test above reaches every operation of a replacing save."""
    index = CodeIndex(model_dir, show_progress=False)
    index.add_texts(OLD_TEXTS)
    index.save(tmp_path / "index")
    with monkeypatch.context() as patch:
        done = _kill_at(patch, 100)
        index.save(tmp_path / "index")
    assert done == ["write_index", "write", "write", "replace", "replace", "rmtree"]


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _shift_lines(file: Path) -> None:  # same count, each record one entry off
    lines = file.read_text().splitlines(keepends=True)
    file.write_text("".join(lines[1:] + lines[:1]))


def _bad_line(file: Path) -> None:
    lines = file.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:10] + "\n"
    file.write_text("".join(lines))


def _drop_line(file: Path) -> None:
    file.write_text("".join(file.read_text().splitlines(keepends=True)[:-1]))


def _edit_manifest(key: str, value: object) -> Callable[[Path], None]:
    def edit(file: Path) -> None:
        config = json.loads(file.read_text())
        config[key] = value
        file.write_text(json.dumps(config))

    return edit


def _swap_faiss(file: Path) -> None:  # another index's vectors: the same size, other bytes
    other = CodeIndex(dim=32)
    other.add_embeddings(np.random.default_rng(1).standard_normal((5, 32)))
    import_faiss().write_index(other._index, str(file))


CORRUPTIONS = [
    ("search_index.json", _truncate, r"search_index\.json:\d+: invalid JSON"),
    ("search_index.json", Path.unlink, r"must hold a saved index \(search_index\.json\)"),
    (
        "search_index.json",
        _edit_manifest("count", 4),
        r"holds 5 vectors, metadata\.jsonl 5 records and search_index\.json says 4",
    ),
    (
        "search_index.json",
        _edit_manifest("count", -1),
        r"search_index\.json: count must be an int >= 0",
    ),
    (
        "search_index.json",
        _edit_manifest("dim", "32"),
        r"search_index\.json: dim must be a positive int",
    ),
    (
        "search_index.json",
        _edit_manifest("index_type", "lsh"),
        r"search_index\.json: index_type must be one of",
    ),
    (
        "search_index.json",
        _edit_manifest("scale", float("nan")),
        r"search_index\.json: scale must be a positive finite",
    ),
    ("search_index.json", _edit_manifest("files", {}), r"search_index\.json: files must be"),
    (
        "search_index.json",
        _edit_manifest("format_version", 1),
        r"search_index\.json: format_version must be 2",
    ),
    ("index.faiss", _truncate, r"index\.faiss holds \d+ bytes but search_index\.json records"),
    ("index.faiss", Path.unlink, r"is missing index\.faiss"),
    ("index.faiss", _swap_faiss, r"index\.faiss does not match the sha256"),
    ("metadata.jsonl", _truncate, r"metadata\.jsonl:\d+: invalid JSON"),
    ("metadata.jsonl", _shift_lines, r"metadata\.jsonl does not match the sha256"),
    ("metadata.jsonl", _bad_line, r"metadata\.jsonl:3: invalid JSON"),
    ("metadata.jsonl", _drop_line, r"metadata\.jsonl holds \d+ bytes but"),
    ("metadata.jsonl", Path.unlink, r"is missing metadata\.jsonl"),
]


@pytest.mark.parametrize(("part", "corrupt", "message"), CORRUPTIONS)
def test_a_corrupt_part_is_named(
    saved: Path, tmp_path: Path, part: str, corrupt: Callable[[Path], None], message: str
) -> None:
    folder = tmp_path / "index"
    shutil.copytree(saved, folder)
    corrupt(folder / part)
    with pytest.raises(IndexFolderError, match=message):
        CodeIndex.load(folder, load_model=False)


@pytest.mark.parametrize(("part", "corrupt", "message"), CORRUPTIONS[:3] + CORRUPTIONS[12:15])
def test_the_command_line_reports_a_corrupt_part_in_one_line(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    part: str, corrupt: Callable[[Path], None], message: str,
) -> None:  # fmt: skip
    folder = tmp_path / "index"
    shutil.copytree(saved, folder)
    corrupt(folder / part)
    assert main(["search", str(folder), "read", "a", "file"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("soft-infonce search: error: ")


def test_blank_queries_are_refused(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = CodeIndex.load(saved)
    for query in ("", "   ", "\t\n"):
        with pytest.raises(ValueError, match="query is blank"):
            index.search(query)
    with pytest.raises(ValueError, match=r"queries\[1\] is blank"):
        index.search_many(["read a file", " "])
    assert main(["search", str(saved), " ", ""]) == 2
    assert "query is blank" in capsys.readouterr().err


def test_adding_a_file_twice_skips_it(model_dir: Path, tmp_path: Path) -> None:
    repository = make_repository(tmp_path / "repo")
    index = CodeIndex(model_dir, show_progress=False)
    first = index.add_paths(repository)
    assert first == 4
    assert index.add_paths(repository) == 0  # every file already indexed: skipped, counted
    assert index.add_paths(repository / "pkg" / "io.py") == 0
    assert len(index) == 4
    assert index.skipped.counts["already indexed"] == 3  # io.py, util.rb, then io.py again
    hits = index.search("read a json file", k=10)
    assert len({(h.path, h.line) for h in hits}) == len(hits) == 4
    # Relative and absolute spellings of one file are the same file.
    cwd = os.getcwd()
    try:
        os.chdir(repository)
        assert index.add_paths("lib/util.rb") == 0
    finally:
        os.chdir(cwd)


def test_another_model_is_refused_unless_allowed(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = save_tiny_model(tmp_path / "other", seed=1)  # same width, other weights
    with pytest.raises(IndexFolderError, match="embeds differently from the one that built"):
        CodeIndex.load(saved, model=other)
    index = CodeIndex.load(saved, model=other, allow_other_model=True)
    assert len(index.search("read a json file", k=2)) == 2
    with pytest.raises(ValueError, match="built with another model"):
        index.add_texts(["def f ( x ) : return x"])
    assert main(["search", str(saved), "read", "--model", str(other)]) == 2
    assert "--allow-other-model" in capsys.readouterr().err
    assert main(["search", str(saved), "read", "--model", str(other), "--allow-other-model"]) == 0
    # The same weights in another folder are the same model.
    copy = tmp_path / "copy"
    shutil.copytree(Path(CodeIndex.load(saved, load_model=False).model_path), copy)
    assert len(CodeIndex.load(saved, model=copy).search("read a json file", k=1)) == 1


def test_index_out_refuses_a_file_before_embedding(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repository = make_repository(tmp_path / "repo")
    (tmp_path / "taken").write_text("a file\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")

    def no_embedding(*args: object, **kwargs: object) -> None:
        raise AssertionError("embedded code before checking --out")

    monkeypatch.setattr(CodeIndex, "_embed_codes", no_embedding)
    for out, message in (("taken", "got the existing file"), ("notes", "holds other files")):
        assert main(["index", str(repository), "--model", str(model_dir), "--out",
                     str(tmp_path / out), "--no-progress"]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine\n"


def test_an_interrupted_swap_reads_the_previous_index(saved: Path, tmp_path: Path) -> None:
    """Killed between the two renames: the target is gone, ``.index.previous`` is whole."""
    os.replace(shutil.copytree(saved, tmp_path / "copy"), tmp_path / ".index.previous")
    assert len(CodeIndex.load(tmp_path / "index", load_model=False)) == 5


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    part=st.sampled_from(["index.faiss", "metadata.jsonl", "search_index.json"]),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    byte=st.integers(min_value=0, max_value=255),
)
def test_any_changed_byte_is_refused_or_changes_nothing(
    saved: Path, tmp_path_factory: pytest.TempPathFactory, part: str, where: float, byte: int
) -> None:
    """One byte of one part replaced: a named error, or (a JSON whitespace change, say) an
    index identical to the saved one; never a different index read as if it were whole."""
    folder = tmp_path_factory.mktemp("flip") / "index"
    shutil.copytree(saved, folder)
    data = bytearray((folder / part).read_bytes())
    position = int(where * len(data))
    if data[position] == byte:
        return
    data[position] = byte
    (folder / part).write_bytes(bytes(data))
    original = CodeIndex.load(saved, load_model=False)
    try:
        loaded = CodeIndex.load(folder, load_model=False)
    except IndexFolderError as error:
        assert part in str(error)
        return
    assert loaded.records == original.records
    assert (loaded.ef_search, loaded.nprobe, loaded.scale) == (
        original.ef_search, original.nprobe, original.scale,
    )  # fmt: skip
    vectors = np.stack([original._index.reconstruct(i) for i in range(len(original))])
    assert np.array_equal(np.stack([loaded._index.reconstruct(i) for i in range(5)]), vectors)


def test_entries_an_index_could_not_read_back_are_refused_when_added(model_dir: Path) -> None:
    index = CodeIndex(model_dir, show_progress=False)
    vectors = np.ones((2, 32))
    for records, message in (
        ([{"name": "f"}, {"name": 3}], r"records\[1\]: field 'name' must be str or null, got 3"),
        ([{"line": True}, {}], r"records\[0\]: field 'line' must be int or null, got True"),
        ([{"path": "a.py"}, "b.py"], r"records\[1\]: expected a JSON object, got str"),
    ):
        with pytest.raises(ValueError, match=message):
            index.add_embeddings(vectors, records)
    assert len(index) == 0 and index._index is None  # nothing half-added
    index.add_embeddings(vectors, [{"name": "f", "other": object()}, {}])  # unknown keys dropped
    assert index.records == [{"name": "f"}, {}]
    with pytest.raises(ValueError, match=r"texts\[1\] is blank"):
        index.add_texts(["def f ( x ) : return x", "  \n"])


def test_the_probe_tolerates_noise_and_nothing_more() -> None:
    from soft_infonce.codesearch.search.manifest import probe_matches

    rng = np.random.default_rng(0)
    old = rng.standard_normal(32)
    recorded = {"query": old.tolist(), "code": (2 * old).tolist()}
    noise = old * (1 + 1e-3 * rng.standard_normal(32))  # half-precision-like rounding
    assert probe_matches(recorded, noise, 2 * noise)
    assert not probe_matches(recorded, rng.standard_normal(32), 2 * old)  # another model
    assert not probe_matches(recorded, old, 2.1 * old)  # same direction, another norm
    assert not probe_matches(recorded, old[:16], 2 * old)

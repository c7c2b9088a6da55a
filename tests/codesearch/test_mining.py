from __future__ import annotations

import ast
import logging
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

from soft_infonce.codesearch.data.mining import default_corpus, mine_pairs

MODULE_A = '''\
import functools


def add(a, b):
    """Add two numbers together.

    More detail that is not part of the query.
    """
    total = a + b
    return total


@functools.lru_cache
def greet(name):
    """Return a friendly greeting
    for the given name."""

    message = "hi " + name  # say hello
    return message


def short(x):
    """Too short a function to keep."""
    return x


def nodoc(x):
    y = x
    return y


def linked(x):
    """Compute the thing.

    See https://example.com for details.
    """
    y = x
    return y


def tiny(x):
    """Tiny."""
    y = x
    return y


def test_helper(x):
    """Checks that a thing works well."""
    y = x
    return y


def shared(x):
    """Docstring shares its line with code."""; y = x
    z = y
    return z


def doubled(x):
    """Double the value given.
    >>> doubled(2)
    4
    """
    y = x * 2
    return y


class Widget:
    def __init__(self):
        """Build the widget right now."""
        self.width = 0
        self.height = 0

    def resize(self, width):
        """Resize the widget to a new width."""
        self.width = width
        return self

    async def fetch(self):
        """Fetch the widget's remote state."""
        data = await self.load()
        return data

    def only_doc(self):
        """A body that is only a docstring."""


try:
    from fastmath import cube
except ImportError:
    def cube(x):
        """Cube a number the slow way."""
        y = x * x
        return y * x


def outer():
    """Outer function with a nested helper."""
    def inner():
        """Inner helper is not mined alone."""
        return 1
    return inner()
'''

EXPECTED_A = {
    "add": ("Add two numbers together.", "def add(a, b):\n    total = a + b\n    return total"),
    "greet": (
        "Return a friendly greeting for the given name.",
        'def greet(name):\n    message = "hi " + name  # say hello\n    return message',
    ),
    "doubled": ("Double the value given.", "def doubled(x):\n    y = x * 2\n    return y"),
    "Widget.resize": (
        "Resize the widget to a new width.",
        "def resize(self, width):\n    self.width = width\n    return self",
    ),
    "Widget.fetch": (
        "Fetch the widget's remote state.",
        "async def fetch(self):\n    data = await self.load()\n    return data",
    ),
    "cube": ("Cube a number the slow way.", "def cube(x):\n    y = x * x\n    return y * x"),
    "outer": (
        "Outer function with a nested helper.",
        'def outer():\n    def inner():\n        """Inner helper is not mined alone."""\n'
        "        return 1\n    return inner()",
    ),
}

# b.py repeats add() (dropped as a duplicate: a.py comes first) and adds one function.
MODULE_B = MODULE_A.split("@functools")[0] + textwrap.dedent(
    '''
    def scale(x, k):
        """Scale x by a factor k."""
        y = x * k
        return y
    '''
)

VALID_FUNCTION = 'def work(x):\n    """Do the work here now."""\n    y = x\n    return y\n'


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "tests").mkdir(parents=True)
    (root / "a.py").write_text(MODULE_A, encoding="utf-8")
    (root / "b.py").write_text(MODULE_B, encoding="utf-8")
    (root / "test_c.py").write_text(VALID_FUNCTION, encoding="utf-8")  # a test file
    (root / "tests" / "d.py").write_text(VALID_FUNCTION, encoding="utf-8")  # a test folder
    (root / "broken.py").write_text("def oops(:\n    pass\n", encoding="utf-8")
    (root / "bad_bytes.py").write_bytes(b"x = '\xff\xfe'\n")  # not UTF-8, no cookie
    latin = "# -*- coding: latin-1 -*-\n" + VALID_FUNCTION.replace("here now", "\xe0 la carte")
    (root / "latin.py").write_bytes(latin.encode("latin-1"))
    return root


def all_rows(splits) -> list[dict]:
    return [row for split in ("train", "valid", "test") for row in splits[split]]


def test_mined_pairs_match_hand_expectations(tree: Path, caplog):
    with caplog.at_level(logging.WARNING):
        splits = mine_pairs([tree], valid_fraction=0.0, test_fraction=0.0, show_progress=False)
    assert "skipped 2 of 5 files" in caplog.text  # broken.py and bad_bytes.py
    rows = {(Path(r["path"]).name, r["name"]): r for r in splits["train"]}
    expected = {("a.py", name): pair for name, pair in EXPECTED_A.items()}
    expected[("b.py", "scale")] = (
        "Scale x by a factor k.",
        "def scale(x, k):\n    y = x * k\n    return y",
    )
    expected[("latin.py", "work")] = (
        "Do the work \xe0 la carte.",
        "def work(x):\n    y = x\n    return y",
    )
    assert set(rows) == set(expected)
    for key, (query, code) in expected.items():
        assert (rows[key]["query"], rows[key]["code"]) == (query, code), key
    assert len(splits["valid"]) == 0 and len(splits["test"]) == 0


def test_files_can_be_given_one_by_one_and_limited(tree: Path):
    splits = mine_pairs([tree / "b.py"], valid_fraction=0.0, test_fraction=0.0, show_progress=False)
    assert sorted(splits["train"]["name"]) == ["add", "scale"]  # no a.py, so add is kept
    only_a = mine_pairs([tree], valid_fraction=0, test_fraction=0, max_files=1, show_progress=False)
    assert {Path(p).name for p in only_a["train"]["path"]} == {"a.py"}


def test_length_filters(tree: Path):
    kwargs = {"valid_fraction": 0.0, "test_fraction": 0.0, "show_progress": False}
    few = mine_pairs([tree / "a.py"], max_doc_tokens=5, **kwargs)["train"]
    # at most 5 words: "Add two numbers together." (4), "Double the value given." (4);
    # the next shortest, "Fetch the widget's remote state.", has 6 (widget, s)
    assert sorted(few["name"]) == ["add", "doubled"]
    small = mine_pairs([tree / "a.py"], max_code_tokens=13, **kwargs)["train"]
    # "def add ( a , b ) : total = a + b return total" has 14 tokens; doubled has 13
    assert sorted(small["name"]) == ["doubled"]


def many_files(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        body = f'def f{i}(x):\n    """Compute value number {i}."""\n    y = x + {i}\n    return y\n'
        (root / f"m{i:02d}.py").write_text(body, encoding="utf-8")
    return root


def test_split_by_file_fractions_and_determinism(tmp_path: Path):
    root = many_files(tmp_path / "many", 30)
    splits = mine_pairs([root], valid_fraction=0.2, test_fraction=0.1, seed=3, show_progress=False)
    # one pair per file: valid takes files until it holds 0.2 * 30 = 6 pairs, test 3, train 21
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [21, 6, 3]
    paths = {s: set(splits[s]["path"]) for s in splits}
    assert not (paths["train"] & paths["valid"] or paths["train"] & paths["test"])
    assert not paths["valid"] & paths["test"]
    again = mine_pairs([root], valid_fraction=0.2, test_fraction=0.1, seed=3, show_progress=False)
    assert {s: list(again[s]["path"]) for s in again} == {
        s: list(splits[s]["path"]) for s in splits
    }
    other = mine_pairs([root], valid_fraction=0.2, test_fraction=0.1, seed=4, show_progress=False)
    assert set(other["valid"]["path"]) != paths["valid"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"valid_fraction": 1.0}, "valid_fraction must be in"),
        ({"valid_fraction": 0.5, "test_fraction": 0.5}, "must be below 1"),
        ({"min_doc_tokens": 5, "max_doc_tokens": 4}, "min <= max"),
        ({"max_code_tokens": 0}, "max_code_tokens"),
        ({"max_files": 0}, "max_files"),
    ],
)
def test_bad_arguments(tree: Path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mine_pairs([tree], show_progress=False, **kwargs)


def test_missing_path_and_no_pairs(tmp_path: Path):
    with pytest.raises(ValueError, match="existing files or folders"):
        mine_pairs([tmp_path / "nowhere"], show_progress=False)
    (tmp_path / "empty.py").write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no pairs"):
        mine_pairs([tmp_path], show_progress=False)


def test_default_corpus_is_the_stdlib_without_tests():
    files = default_corpus()
    root = Path(sysconfig.get_paths()["stdlib"])
    assert root / "json" / "decoder.py" in files and root / "os.py" in files
    for file in files:
        parts = file.relative_to(root).parts[:-1]
        assert not {"test", "tests", "site-packages", "idlelib"} & set(parts), file


def test_stdlib_mining():
    started = time.perf_counter()
    splits = mine_pairs(default_corpus(), show_progress=False)
    elapsed = time.perf_counter() - started
    rows = all_rows(splits)
    assert len(rows) > 3000, len(rows)
    assert elapsed < 60
    paths = {s: set(splits[s]["path"]) for s in splits}
    assert not (paths["train"] & paths["valid"] or paths["train"] & paths["test"])
    assert not paths["valid"] & paths["test"]
    assert 0.05 < len(splits["valid"]) / len(rows) < 0.2
    assert len({" ".join(r["code"].split()) for r in rows}) == len(rows)
    for row in rows:
        function = ast.parse(row["code"]).body[0]
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)), row["name"]
        assert function.name == row["name"].rsplit(".", 1)[-1]
        assert (
            "https://" not in row["query"]
            and "http://" not in row["query"]
            and len(row["query"].split()) >= 2
        )

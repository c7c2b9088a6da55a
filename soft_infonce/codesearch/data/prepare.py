"""``soft-infonce data codesearchnet``: CodeSearchNet in the layout the Table 1 recipes read.

The recipes read ``dataset/<lang>/{train,valid,test,codebase}.jsonl``, GraphCodeBERT's
code-search layout: one JSON object a line with ``url``, ``docstring_tokens``, ``code_tokens``
and ``original_string`` (the source GraphCodeBERT's data flow parses); valid and test queries
are ranked against ``codebase.jsonl``.

The rows come from CodeXGLUE's Code-Text split of CodeSearchNet
(``google/code_x_glue_ct_code_to_text`` on the Hugging Face Hub, or its JSON-lines files given
with ``--from-jsonl``): the same
filtered train / valid / test functions as GraphCodeBERT's split (the sizes of the paper's
Table 6). The code base is where the two differ: GraphCodeBERT's ``codebase.jsonl`` also holds
the validation and test functions its filters removed (Ruby: 4,360 codes), which only its
``dataset.zip`` lists; here the code base is the valid and test functions (Ruby: 2,661), unless
``--codebase-jsonl`` names GraphCodeBERT's file. With the smaller code base a query has fewer
distractors, so MRRs come out somewhat higher than the paper's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["HUB_DATASET", "LANGUAGES", "TABLE_6", "prepare_codesearchnet", "read_rows"]

HUB_DATASET = "google/code_x_glue_ct_code_to_text"
LANGUAGES = ("ruby", "python", "java", "javascript", "php", "go")
SPLITS = ("train", "valid", "test")
#: The paper's Table 6 (GraphCodeBERT's split): train, valid, test, code base.
TABLE_6 = {
    "ruby": (24927, 1400, 1261, 4360),
    "python": (251820, 13914, 14918, 43827),
    "java": (164923, 5183, 10955, 40347),
    "javascript": (58025, 3885, 3291, 13981),
    "php": (241241, 12982, 14014, 52660),
    "go": (167288, 7325, 8122, 28120),
}
_HUB_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
#: what the recipes read -> the names a CodeSearchNet row may use for it (CodeXGLUE first,
#: then the original CodeSearchNet release on the Hub)
_FIELDS = {
    "url": ("url", "func_code_url"),
    "docstring_tokens": ("docstring_tokens", "func_documentation_tokens"),
    "code_tokens": ("code_tokens", "func_code_tokens"),
    "original_string": ("original_string", "whole_func_string", "code", "func_code_string"),
}
_KEPT = ("func_name", "repo", "path", "language")


def _row(record: Any, where: str) -> dict[str, Any]:
    """One output row, checked: the four fields the recipes read (+ names, when present)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    row: dict[str, Any] = {}
    for field, names in _FIELDS.items():
        name = next((n for n in names if n in record), None)
        if name is None:
            raise ValueError(f"{where}: no {field!r} field (looked for {', '.join(names)})")
        value = record[name]
        if field.endswith("_tokens"):
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ValueError(f"{where}: {name!r} must be a list of strings")
        elif not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {name!r} must be a non-empty string, got {value!r:.60}")
        row[field] = value
    row |= {k: record[k] for k in _KEPT if isinstance(record.get(k), str)}
    return row


def _split_of(path: Path, record: Mapping[str, Any]) -> str | None:
    stem = path.name.split(".")[0]
    if stem in SPLITS:
        return stem
    partition = record.get("partition")
    return "valid" if partition == "validation" else partition if partition in SPLITS else None


def read_rows(paths: Iterable[str | os.PathLike[str]]) -> dict[str, list[dict[str, Any]]]:
    """Rows of local CodeXGLUE Code-Text files by split: a folder's ``{train,valid,test}.jsonl``,
    or files whose name (else each row's ``partition``) gives the split.

    Raises:
        ValueError: a missing file, invalid JSON or a row without the fields (file:line), or
            a row whose split cannot be told.
    """
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = [path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").is_file()]
            if not found:
                raise ValueError(f"--from-jsonl: {path} holds none of train/valid/test.jsonl")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"--from-jsonl: no such file or folder: {path}")
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for path in files:
        for lineno, record in _jsonl(path):
            split = _split_of(path, record)
            if split is None:
                raise ValueError(
                    f"{path}:{lineno}: cannot tell the split: name the file train/valid/test"
                    ".jsonl or give the row a 'partition'"
                )
            rows[split].append(_row(record, f"{path}:{lineno}"))
    return rows


def _jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({error.msg})") from None


def hub_rows(language: str, dataset: str = HUB_DATASET) -> dict[str, list[dict[str, Any]]]:
    """The rows of one language from the Hugging Face Hub through ``datasets`` (needs network)."""
    import datasets

    try:
        splits = datasets.load_dataset(dataset, language)
    except Exception as error:  # noqa: BLE001 - the network, the Hub, an unknown name
        raise ValueError(
            f"cannot load {dataset} ({language}) from the Hugging Face Hub: "
            f"{type(error).__name__}: {error} (offline? pass local files with --from-jsonl)"
        ) from error
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for hub_split, split in _HUB_SPLITS.items():
        if hub_split in splits:
            for i, record in enumerate(splits[hub_split]):
                rows[split].append(_row(record, f"{dataset}/{language} {hub_split} row {i}"))
    return rows


def _write(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def _unique(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for row in rows:
        if row["url"] not in seen:
            seen.add(row["url"])
            yield row


def prepare_codesearchnet(
    language: str,
    out: str | os.PathLike[str],
    rows: Mapping[str, list[dict[str, Any]]],
    *,
    codebase: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Write ``<out>/<language>/{train,valid,test,codebase}.jsonl``; returns the counts.

    Args:
        language: One of :data:`LANGUAGES` (the folder name the recipes read).
        out: The dataset root (the recipes read ``dataset/``).
        rows: Split -> rows (from :func:`read_rows` or :func:`hub_rows`).
        codebase: The code base's rows (GraphCodeBERT's ``codebase.jsonl``); default: the
            valid and test rows, each url once.

    Raises:
        ValueError: an unknown language, an empty split, or a valid/test url missing from
            the given code base.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    empty = [s for s in SPLITS if not rows.get(s)]
    if empty:
        raise ValueError(
            f"the data has no {'/'.join(empty)} rows: all of train, valid, test needed"
        )
    folder = Path(out) / language
    folder.mkdir(parents=True, exist_ok=True)
    base = list(_unique(codebase if codebase is not None else [*rows["valid"], *rows["test"]]))
    urls = {row["url"] for row in base}
    for split in ("valid", "test"):
        missing = [row["url"] for row in rows[split] if row["url"] not in urls]
        if missing:
            raise ValueError(
                f"the code base lacks {len(missing)} {split} url(s), first {missing[0]!r}"
            )
    counts = {split: _write(folder / f"{split}.jsonl", rows[split]) for split in SPLITS}
    counts["codebase"] = _write(folder / "codebase.jsonl", base)
    return counts


def add_parser(commands: Any) -> Any:
    """The ``data`` sub-command's parser (``soft-infonce data codesearchnet ...``)."""
    parser = commands.add_parser(
        "data",
        help="prepare a data set in the layout the recipes read",
        description="Write CodeSearchNet as dataset/<language>/{train,valid,test,codebase}"
        ".jsonl (GraphCodeBERT's code-search layout) from the Hugging Face Hub "
        f"({HUB_DATASET}, through `datasets`) or from local CodeXGLUE Code-Text files.",
    )
    kinds = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    csn = kinds.add_parser("codesearchnet", help="CodeSearchNet, one language")
    csn.add_argument("--language", required=True, choices=LANGUAGES)
    csn.add_argument(
        "--out",
        default="dataset",
        metavar="DIR",
        help="the dataset root; writes DIR/<language>/ (default dataset)",
    )
    csn.add_argument(
        "--from-jsonl",
        nargs="+",
        metavar="PATH",
        help="local CodeXGLUE Code-Text files, or a folder with train/valid/test"
        ".jsonl, instead of the Hub",
    )
    csn.add_argument(
        "--codebase-jsonl",
        metavar="FILE",
        help="the code base (GraphCodeBERT's codebase.jsonl); default: the valid "
        "and test functions",
    )
    csn.add_argument("--hub-dataset", default=HUB_DATASET,
                     help=f"the Hub data set to load (default {HUB_DATASET})")  # fmt: skip
    return parser


def run(args: Any) -> int:
    """Run ``soft-infonce data codesearchnet``: read, write, print the counts."""
    if args.from_jsonl:
        rows = read_rows(args.from_jsonl)
        source = ", ".join(args.from_jsonl)
    else:
        rows = hub_rows(args.language, args.hub_dataset)
        source = f"{args.hub_dataset} ({args.language})"
    codebase = None
    if args.codebase_jsonl:
        codebase = [
            _row(r, f"{args.codebase_jsonl}:{n}") for n, r in _jsonl(Path(args.codebase_jsonl))
        ]
    counts = prepare_codesearchnet(args.language, args.out, rows, codebase=codebase)
    paper = dict(zip(("train", "valid", "test", "codebase"), TABLE_6[args.language]))
    print(f"Wrote {Path(args.out) / args.language} from {source}:")
    for split, n in counts.items():
        print(f"  {split + '.jsonl':<16}{n:>8} rows   (the paper's Table 6: {paper[split]:,})")
    if codebase is None:
        print(
            "  the code base is the valid + test functions; GraphCodeBERT's also holds the "
            "functions its filters removed (see docs/reproducing.md)"
        )
    return 0

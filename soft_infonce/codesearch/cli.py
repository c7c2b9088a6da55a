"""The ``soft-infonce`` command (also ``python -m soft_infonce.codesearch``).

Index a code base with a trained model, then search it::

    soft-infonce index src/ lib/ --model my-model/ --out my-index/
    soft-infonce search my-index/ "read a json file" -k 10

Fine-tune a model (:mod:`soft_infonce.codesearch.train`; ``examples/run_codesearch.py`` in a
checkout is the same command), prepare CodeSearchNet for the paper's recipes
(:mod:`soft_infonce.codesearch.data.prepare`) and run one language's row of its Table 1
(:mod:`soft_infonce.codesearch.reproduce`)::

    soft-infonce train --help
    soft-infonce data codesearchnet --language ruby --out dataset/
    soft-infonce reproduce --language ruby --data dataset/

Check a pairs file for near-duplicates and likely false negatives before training
(:mod:`soft_infonce.codesearch.data.report`)::

    soft-infonce inspect pairs.jsonl --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

logger = logging.getLogger("soft_infonce.codesearch.cli")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("soft-infonce")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command (``index``, ``search``, ``train``, ``data``,
    ``inspect``, ``reproduce``)."""
    from soft_infonce.codesearch.search.extract import LANGUAGE_SUFFIXES

    # fmt: off
    parser = argparse.ArgumentParser(
        prog="soft-infonce",
        description="Code search with Soft-InfoNCE bi-encoders: index a code base, search it, "
        "or fine-tune a model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser(
        "index",
        help="embed the functions of source files and save a search index",
        description="Extract the functions of every source file under PATH (Python with ast; "
        f"{', '.join(sorted(set(LANGUAGE_SUFFIXES) - {'python'}))} with tree-sitter), embed "
        "them with the model and save a FAISS index with each function's path, line and name. "
        "Files that cannot be read or parsed are skipped and counted.",
    )
    index.add_argument("paths", nargs="+", metavar="PATH", help="source files or folders")
    index.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="a saved BiEncoder or sentence-transformers model folder",
    )
    index.add_argument("--out", required=True, metavar="DIR", help="folder to write the index to")
    index.add_argument(
        "--index-type", choices=("flat", "hnsw", "ivf"), default="flat",
        help="flat: exact inner product (default); hnsw or ivf: approximate, for large code "
        "bases (hundreds of thousands of functions; ivf builds much faster than hnsw)",
    )
    index.add_argument(
        "--languages", metavar="LANG[,LANG]",
        help=f"languages to index, comma-separated, among {','.join(LANGUAGE_SUFFIXES)} "
        "(default: all)",
    )
    index.add_argument("--include-tests", action="store_true",
                       help="also index test files and folders (test_*.py, tests/, ...)")
    index.add_argument("--max-length", type=int, default=256, help="code tokens (default 256)")
    index.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    index.add_argument("--hnsw-m", type=int, default=16, help="HNSW neighbours per node")
    index.add_argument("--ef-construction", type=int, default=40, help="HNSW build beam width")
    index.add_argument("--ef-search", type=int, default=64,
                       help="HNSW search beam width (saved; larger: better recall, slower)")
    index.add_argument("--nlist", type=int,
                       help="IVF lists (default: sqrt of the number of functions)")
    index.add_argument("--nprobe", type=int, default=16,
                       help="IVF lists scanned per query (saved; larger: better recall, slower)")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")

    search = commands.add_parser(
        "search",
        help="query a saved index",
        description="Print the functions that best match a natural-language query, best "
        "first, as `score  path:line  name`.",
    )
    search.add_argument("index", metavar="DIR", help="an index folder written by `index`")
    search.add_argument("query", nargs="+", help="the query (several words are joined)")
    search.add_argument(
        "-k", "--top-k", type=int, default=10, dest="k", help="number of results (default 10)"
    )
    search.add_argument(
        "--model", metavar="DIR", help="model folder (default: the one the index was built with)"
    )
    search.add_argument("--ef-search", type=int,
                        help="HNSW search beam width for this query (default: the saved one)")
    search.add_argument("--nprobe", type=int,
                        help="IVF lists scanned for this query (default: the saved one)")
    search.add_argument("--json", action="store_true", help="print the hits as JSON lines")
    search.add_argument(
        "--hybrid", action="store_true",
        help="fuse the model's ranking with BM25's over the functions' text (reciprocal rank "
        "fusion; the score printed is the fused one)",
    )  # fmt: skip
    search.add_argument(
        "--allow-other-model", action="store_true",
        help="search with --model even though it embeds differently from the model that "
        "built the index (a warning instead of an error)",
    )

    commands.add_parser(
        "train",
        help="fine-tune a model (`soft-infonce train --help` lists its options)",
        description="Fine-tune a code-search bi-encoder with Soft-InfoNCE: every argument is "
        "passed to soft_infonce.codesearch.train (`soft-infonce train --help` prints its options).",
        add_help=False,
    )
    # fmt: on
    from soft_infonce.codesearch import reproduce
    from soft_infonce.codesearch.data import prepare, report_command

    prepare.add_parser(commands)
    report_command.add_parser(commands)
    reproduce.add_parser(commands)
    return parser


def _index(args: argparse.Namespace) -> int:
    from soft_infonce.codesearch.search import CodeIndex
    from soft_infonce.codesearch.search._faiss import import_faiss
    from soft_infonce.codesearch.search.hybrid import TEXTS_FILE, texts_jsonl
    from soft_infonce.codesearch.search.storage import check_destination

    import_faiss()  # the search extra, before the model loads
    check_destination(args.out)  # before any embedding work
    languages = [x.strip() for x in args.languages.split(",")] if args.languages else None
    index = CodeIndex(
        args.model, index_type=args.index_type, hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction, ef_search=args.ef_search,
        nlist=args.nlist, nprobe=args.nprobe,
        max_length=args.max_length, batch_size=args.batch_size,
        show_progress=not args.no_progress,
    )  # fmt: skip
    added = index.add_paths(args.paths, languages=languages, skip_tests=not args.include_tests)
    out = index.save(args.out, extras={TEXTS_FILE: texts_jsonl(index)})  # texts: for --hybrid
    skipped = f"; skipped {index.skipped.total} files: {index.skipped.summary()}"
    print(f"Indexed {added} functions into {out}" + (skipped if index.skipped.total else ""))
    return 0


def _search(args: argparse.Namespace) -> int:
    from soft_infonce.codesearch.search import CodeIndex
    from soft_infonce.codesearch.search._faiss import import_faiss

    import_faiss().omp_set_num_threads(1)  # one query: an OpenMP team only adds waiting
    query = " ".join(args.query)
    if not query.strip():
        raise ValueError(f"query is blank: a query needs words, got {query!r}")
    if args.hybrid:
        from soft_infonce.codesearch.search.hybrid import HybridSearcher

        hybrid = HybridSearcher.load(
            args.index, model=args.model, allow_other_model=args.allow_other_model
        )
        index, search = hybrid.index, hybrid.search
    else:
        index = CodeIndex.load(
            args.index, model=args.model, allow_other_model=args.allow_other_model
        )
        search = index.search
    index.set_search_params(ef_search=args.ef_search, nprobe=args.nprobe)
    for hit in search(query, k=args.k):
        if args.json:
            fields = ("score", "path", "line", "end_line", "name", "language", "text")
            print(json.dumps({name: getattr(hit, name) for name in fields}, ensure_ascii=False))
        else:
            print(hit)
    return 0


def _data(args: argparse.Namespace) -> int:
    from soft_infonce.codesearch.data import prepare

    return prepare.run(args)


def _inspect(args: argparse.Namespace) -> int:
    from soft_infonce.codesearch.data import report_command

    return report_command.run(args)


def _reproduce(args: argparse.Namespace) -> int:
    from soft_infonce.codesearch import reproduce

    return reproduce.reproduce(args)


_COMMANDS = {
    "index": _index,
    "search": _search,
    "data": _data,
    "inspect": _inspect,
    "reproduce": _reproduce,
}


def _train(argv: list[str]) -> int:
    from soft_infonce.codesearch.train import main as train

    train(argv, prog="soft-infonce train")  # parses argv itself (HfArgumentParser)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Bad input (a corrupt index or model folder, a blank query, an unusable ``--out``, a
    missing extra, a file that cannot be read or written) prints one line on stderr and
    returns 2, without a traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _train(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command != "data":  # `data` downloads from the Hub unless told not to
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, ImportError, OSError) as error:
        print(f"soft-infonce {args.command}: error: {error}", file=sys.stderr)
        return 2

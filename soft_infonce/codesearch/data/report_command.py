"""``soft-infonce inspect PAIRS.jsonl``: the data report of :mod:`.report` on the command line.

soft-infonce inspect pairs.jsonl --batch-size 32 --estimator bm25
soft-infonce inspect pairs.jsonl --json > report.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from soft_infonce.codesearch.data.report import PairsReport, inspect_pairs, read_pairs
from soft_infonce.estimators.registry import ESTIMATORS

__all__ = ["add_parser", "format_report", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``inspect`` sub-command's parser."""
    parser = commands.add_parser(
        "inspect",
        help="near-duplicates and likely false negatives of a pairs file, before training",
        description="Report near-duplicate groups, the share of likely false negatives per "
        "batch (random and topic-clustered) and the weights an estimator would give them.",
    )
    parser.add_argument("pairs", help="JSON-lines file of query/code pairs")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per batch (default 32)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="token Jaccard at which two docstrings or codes are near-duplicates (default 0.5)",
    )
    parser.add_argument(
        "--estimator",
        default="bm25",
        help=f"weight estimator, at its preset: one of {', '.join(ESTIMATORS)} (those that read "
        "a model need --estimator-model), or package.module:Attribute (default bm25)",
    )
    parser.add_argument("--estimator-model", metavar="DIR", help="the estimator's frozen model")
    parser.add_argument("--clusters", type=int, help="k-means clusters (default: pairs // batch)")
    parser.add_argument("--query-field", default="query", help="the query's field (query)")
    parser.add_argument("--code-field", default="code", help="the code's field (code)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def format_report(report: PairsReport) -> str:
    """The report as a few lines of text."""
    lines = [
        f"{report.pairs} pairs; {report.exact_duplicate_codes} exact duplicate codes; "
        f"{report.groups} near-duplicate groups holding {report.pairs_in_groups} pairs "
        f"(largest: {report.largest_groups})",
    ]
    lines += [f"  e.g. {' | '.join(t[:60] for t in group)}" for group in report.examples]
    lines.append(
        f"batches of {report.batch_size}, estimator {report.estimator} at its preset:"
        f"\n  {'':<10}{'likely FN':>10}{'w(FN)':>8}{'w(rest)':>9}{'clamped FN':>12}"
    )
    for kind, row in report.batches.items():
        lines.append(
            f"  {kind:<10}{100 * row['false_negative_share']:>9.2f}%"
            f"{row['w_false_negatives']:>8.3f}{row['w_other_negatives']:>9.3f}"
            f"{100 * row['clamped_false_negatives']:>11.1f}%"
        )
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``soft-infonce inspect``: read ``args.pairs``, print the report (or ``--json``)."""
    try:
        queries, codes = read_pairs(args.pairs, args.query_field, args.code_field)
    except OSError as error:
        raise ValueError(f"cannot read {args.pairs}: {error.strerror or error}") from error
    if not queries:
        raise ValueError(f"{args.pairs}: no pairs")
    report = inspect_pairs(
        queries,
        codes,
        batch_size=args.batch_size,
        threshold=args.threshold,
        estimator=args.estimator,
        estimator_model=args.estimator_model,
        n_clusters=args.clusters,
    )
    print(json.dumps(report.to_dict()) if args.json else format_report(report))
    return 0

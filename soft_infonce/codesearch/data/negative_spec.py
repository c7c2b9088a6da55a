"""The hard-negative setting as one object: method, k and the positive-aware margins.

A command line or benchmark parses its text once (:meth:`HardNegativeSpec.parse`), the object
checks itself once when built, and the miner, the training command and the benchmarks pass it
on (:meth:`HardNegativeSpec.miner_options`) instead of re-reading the text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from soft_infonce.checks import check_int, check_number

METHODS = ("bm25", "dense")
#: The relative margin of NV-Retriever's TopK-PercPos filter (a candidate within 5% of the
#: positive's score is dropped as a likely false negative).
POSITIVE_AWARE_MARGIN = 0.05


def check_margins(
    *,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
) -> None:
    """The miner's score filters: finite numbers or ``None``; a relative margin in [0, 1)."""
    for name, value in (
        ("absolute_margin", absolute_margin),
        ("max_score", max_score),
        ("min_score", min_score),
    ):
        if value is not None:
            check_number(name, value)
    if relative_margin is not None:
        check_number("relative_margin", relative_margin, low=0, high=1, high_open=True)


@dataclass(frozen=True)
class HardNegativeSpec:
    """How to mine hard negatives for every training pair.

    Attributes:
        method: ``"bm25"`` (BM25 of the query against the pool) or ``"dense"`` (a model's
            own scores).
        k: Negatives per pair (>= 1).
        relative_margin: Drop candidates scoring within this fraction of the positive's
            score (positive-aware; NV-Retriever uses 0.05); ``None``: no such filter.
        absolute_margin: Drop candidates scoring within this of the positive's score.
    """

    method: Literal["bm25", "dense"]
    k: int
    relative_margin: float | None = None
    absolute_margin: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        check_int("k", self.k)
        check_margins(absolute_margin=self.absolute_margin, relative_margin=self.relative_margin)

    @classmethod
    def parse(
        cls,
        text: str | None,
        *,
        relative_margin: float | None = None,
        absolute_margin: float | None = None,
    ) -> HardNegativeSpec | None:
        """``"bm25:3"`` -> ``HardNegativeSpec("bm25", 3)``; ``None``, ``""`` or ``"none"``
        -> ``None`` (in-batch negatives only).

        Raises:
            ValueError: not ``METHOD:K`` with a known method and K >= 1, or a bad margin.
        """
        if text is None or text.strip() in ("", "none"):
            return None
        method, _, k = (part.strip() for part in text.partition(":"))
        if method not in METHODS or not k.isdigit() or int(k) < 1:
            raise ValueError(
                f"must be METHOD:K with METHOD {' or '.join(METHODS)} and K >= 1 (e.g. bm25:3), "
                f"got {text!r}"
            )
        return cls(
            cast(Literal["bm25", "dense"], method),
            int(k),
            relative_margin=relative_margin,
            absolute_margin=absolute_margin,
        )

    def miner_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~soft_infonce.codesearch.data.mine_hard_negatives`."""
        options: dict[str, Any] = {"k": self.k, "method": self.method}
        for name in ("relative_margin", "absolute_margin"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options

    def to_dict(self) -> dict[str, Any]:
        """The fields, for a results file."""
        return asdict(self)

"""Data of the controlled false-negative experiment: real pairs and their lightly changed copies.

A copy keeps the meaning of its pair and changes its surface, as forks and vendored copies do:

* code: 1-3 identifiers renamed consistently (a suffix, a prefix, or snake_case <-> camelCase),
  and sometimes a comment line added in front;
* query: one or two words dropped, or, when the docstring has several sentences, another of
  its sentences.

Every copy differs from its pair and from the other copies in the code text, so a code text
names its group (``group_of_code``), which is how the oracle estimator finds the copies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import torch

from soft_infonce import WeightEstimator

_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
RUBY_KEYWORDS = frozenset(
    "def end if else elsif unless while until for in do return class module self nil true "
    "false and or not then when case begin rescue ensure yield super puts require new raise "
    "each map attr_reader attr_accessor lambda proc block_given private protected public".split()
)
COMMENTS = ("# helper", "# TODO: tidy", "# frozen_string_literal: true", "# see docs", "# fork")


def _rename(name: str, rng: random.Random) -> str:
    how = rng.randrange(4)
    if how == 0:
        return f"{name}{rng.randrange(2, 10)}"
    if how == 1:
        return f"{rng.choice(('my', 'the', 'tmp', 'new'))}_{name}"
    if how == 2 and "_" in name.strip("_"):
        head, *rest = name.split("_")
        return head + "".join(p.capitalize() for p in rest)
    return f"{name}_{rng.choice(('val', 'obj', 'x', 'ref'))}"


def vary_code(code: str, rng: random.Random) -> str:
    """``code`` with 1-3 of its identifiers renamed (whole words), maybe a comment in front."""
    names = sorted({m for m in _IDENT.findall(code) if m not in RUBY_KEYWORDS and len(m) > 1})
    if not names:
        return f"{rng.choice(COMMENTS)} {code}"
    chosen = rng.sample(names, min(len(names), rng.randint(1, 3)))
    mapping = {n: _rename(n, rng) for n in chosen}
    out = _IDENT.sub(lambda m: mapping.get(m.group(0), m.group(0)), code)
    if rng.random() < 0.3:
        out = f"{rng.choice(COMMENTS)} {out}"
    return out


def vary_query(query: str, rng: random.Random) -> str:
    """Another sentence of the docstring, or ``query`` with one or two words dropped."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", query) if len(s.split()) >= 3]
    if len(sentences) >= 2 and rng.random() < 0.5:
        return rng.choice(sentences[1:])
    words = query.split()
    if len(words) < 4:
        return query
    for _ in range(rng.randint(1, 2)):
        del words[rng.randrange(len(words))]
    return " ".join(words)


def make_copies(
    queries: Sequence[str], codes: Sequence[str], copies: int, seed: int = 0
) -> tuple[list[str], list[str], list[int]]:
    """The pairs followed by ``copies`` variants of each: (queries, codes, group id per row).

    Raises:
        ValueError: two pairs share a code text, or a pair yields no distinct copy.
    """
    if len(set(codes)) != len(codes):
        raise ValueError("codes must be distinct (a code text names its group)")
    rng = random.Random(seed)
    out_q, out_c, groups = list(queries), list(codes), list(range(len(queries)))
    seen = set(codes)
    for g, (query, code) in enumerate(zip(queries, codes)):
        for _ in range(copies):
            for _attempt in range(50):
                variant = vary_code(code, rng)
                if variant not in seen:
                    break
            else:
                raise ValueError(f"pair {g}: no distinct code copy after 50 tries")
            seen.add(variant)
            out_q.append(vary_query(query, rng))
            out_c.append(variant)
            groups.append(g)
    return out_q, out_c, groups


class GroupEstimator(WeightEstimator):
    """The oracle's estimator: 1 where the candidate code is in the row's group, else 0.

    Row ``i``'s group is that of its positive, ``codes[i]`` (in-batch: the codes' first
    ``len(queries)`` entries are the positives). With ``FalseNegativeCancellationLoss(mode=
    "threshold", ratio=1.0)`` every known copy is dropped from the row's negatives.
    """

    preset = None

    def __init__(self, group_of_code: dict[str, int]) -> None:
        self.group_of_code = group_of_code

    def similarity(self, queries, codes, candidate_queries=None) -> torch.Tensor:
        groups = torch.tensor([self.group_of_code.get(c, -1 - k) for k, c in enumerate(codes)])
        return (groups[: len(queries), None] == groups[None, :]).float()


def weight_on_copies(loss, estimator, queries, codes, groups, batches) -> dict[str, float]:
    """Mean Eq. 4 weight that ``loss`` gives known copies and true negatives, and clamp shares.

    Args:
        loss: a ``SoftInfoNCELoss`` (its ``weights``: alpha, beta, t, clamp).
        estimator: its estimator; ``queries``/``codes``/``groups``: the training rows;
        batches: row-index batches (in-batch negatives only).
    """
    on_copy, on_true, clamped_copy, clamped_true = [], [], [], []
    g = torch.tensor(groups)
    for batch in batches:
        q = [queries[i] for i in batch]
        c = [codes[i] for i in batch]
        w = loss.weights(estimator(q, c, q))
        same = g[batch][:, None] == g[batch][None, :]
        off = ~torch.eye(len(batch), dtype=torch.bool)
        low = w <= loss.min_weight + 1e-6
        on_copy.append(w[same & off])
        on_true.append(w[~same])
        clamped_copy.append(low[same & off])
        clamped_true.append(low[~same])
    cat = torch.cat

    def mean(parts: list[torch.Tensor]) -> float:
        x = cat(parts).float()
        return float(x.mean()) if x.numel() else float("nan")

    return {
        "w_copies": mean(on_copy),
        "w_true_negatives": mean(on_true),
        "clamped_copies": mean(clamped_copy),
        "clamped_true_negatives": mean(clamped_true),
        "copies_counted": float(cat(on_copy).numel()),
    }

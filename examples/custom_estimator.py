"""Write your own weight estimator: here, how alike two functions' code is (difflib).

Soft-InfoNCE pushes a negative away less when it looks relevant to the query (paper, Eq. 4).
"Relevant" is whatever the estimator says; this one compares query i's own code with each
candidate code token by token, so near-duplicate functions (overloads, copies across
repositories) are treated as probable false negatives.

Run from the repository root (CPU, a second or two):

    python examples/custom_estimator.py --data ../shared/data/csn-ruby/valid.jsonl --batch_size 8

It prints the similarity and the Eq. 4 weights of one batch of real CodeSearchNet-Ruby pairs,
then the Soft-InfoNCE loss of random embeddings with the estimator plugged into the loss.
"""

from __future__ import annotations

import argparse
import difflib
import json

import torch

from soft_infonce.estimators import WeightEstimator, code_tokenize
from soft_infonce.functional import negative_weights


# --- the estimator: this is all a user writes --------------------------------------------------
class CodeEditEstimator(WeightEstimator):
    """sim_ij = difflib ratio (in [0, 1]) between the tokens of code i and of code j."""

    preset = None  # scores in [0, 1], like cosines: use a small temperature (0.1)

    def __init__(self) -> None:
        self._tokens: dict[str, list[str]] = {}  # each code tokenised once per run

    def similarity(self, queries, codes, candidate_queries=None):
        tokens = [self._tokens.setdefault(c, code_tokenize(c)) for c in codes]
        scores = torch.zeros(len(queries), len(codes))
        for i in range(len(queries)):  # codes[i] is query i's own code
            matcher = difflib.SequenceMatcher(None, b=tokens[i], autojunk=False)
            for j, other in enumerate(tokens):
                matcher.set_seq1(other)
                scores[i, j] = matcher.ratio()
        return scores


# --- using it ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/csn-ruby/valid.jsonl")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.1)
    args = parser.parse_args()

    with open(args.data, encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.batch_size), handle)]
    queries = [" ".join(row["docstring_tokens"]) or row["func_name"] for row in rows]
    codes = [row["code"] for row in rows]

    estimator = CodeEditEstimator()
    sim = estimator(queries, codes)  # validated, float32 [N, N], no gradients
    weights = negative_weights(sim, alpha=1.3, beta=0.7, temperature=args.temperature)
    torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)
    print("similarity (row i: query i's code vs every code)\n", sim)
    print("Eq. 4 weights (1 on the diagonal = the positives)\n", weights)
    off_diagonal = weights.masked_fill(torch.eye(len(rows), dtype=torch.bool), float("inf"))
    i, j = divmod(int(off_diagonal.argmin()), len(rows))
    print(f"most down-weighted negative: w[{i},{j}] = {weights[i, j]:.3f}, sim = {sim[i, j]:.3f}")
    print(f"  query {i}: {queries[i][:80]!r}\n  its negative code {j}: {codes[j][:80]!r}")

    from soft_infonce import SoftInfoNCELoss

    loss_fn = SoftInfoNCELoss(estimator=estimator, temperature=args.temperature, scale=20.0)
    q = torch.nn.functional.normalize(torch.randn(len(rows), 32), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(len(rows), 32), dim=-1)
    print(
        f"Soft-InfoNCE loss of random embeddings: {loss_fn(q, c, queries=queries, codes=codes):.4f}"
    )


if __name__ == "__main__":
    main()

"""Property-based tests of the public API (issue 12): every call either returns a finite, right
result or raises ``ValueError`` / ``TypeError`` whose message names the argument at fault;
never another exception type, never a hang.

Each test draws valid inputs, then (sometimes) breaks exactly one argument with a value drawn
from a pool of invalid ones; the error must then name that argument. Valid draws are checked
against an independent computation (float64 transcriptions, brute-force ranks, a line-by-line
model of the JSON-lines rules).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from soft_infonce import functional as SF
from soft_infonce.metrics import target_ranks

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
NAN, INF = float("nan"), float("inf")
DTYPES = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])


def check_error(error: BaseException, *names: str) -> None:
    """A ValueError/TypeError whose message names one of ``names``."""
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    assert any(name in str(error) for name in names), f"{names} not named in: {error}"


def call(function, *args, **kwargs):
    """(result, None) or (None, the exception): any exception is returned for checking."""
    try:
        return function(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 - the property inspects the type
        return None, error


@st.composite
def matrices(draw, min_n: int = 1, max_n: int = 5, extra: int = 4, bound: float = 30.0):
    """A finite ``[N, M]`` matrix, ``M >= max(N, 2)``, of a random floating dtype."""
    n = draw(st.integers(min_n, max_n))
    m = draw(st.integers(max(n, 2), n + extra))
    values = draw(
        st.lists(
            st.floats(-bound, bound, allow_nan=False, width=16), min_size=n * m, max_size=n * m
        )
    )
    return torch.tensor(values, dtype=torch.float64).view(n, m).to(draw(DTYPES))


def bad_matrices(shape: tuple[int, int]) -> st.SearchStrategy:
    n, m = shape
    return st.sampled_from(
        [
            [[0.0] * m] * n,  # a list, not a tensor
            torch.full((n, m), NAN),
            torch.full((n, m), INF),
            torch.zeros(n * m),  # 1-D
            torch.zeros(n, m, dtype=torch.long),
            torch.zeros(n, 1),  # one candidate
            torch.zeros(0, m),
            "scores",
            None,
        ]
    )


BAD_POSITIVE = st.sampled_from([0.0, -1.0, NAN, INF, -INF, "1.0", True, None])
BAD_NON_NEGATIVE = st.sampled_from([-0.5, NAN, INF, -INF, "0.5", True, None])


def bad_labels(n: int, m: int) -> st.SearchStrategy:
    return st.sampled_from(
        [
            torch.full((n,), m, dtype=torch.long),  # out of range
            torch.full((n,), -1, dtype=torch.long),
            torch.zeros(n + 1, dtype=torch.long),
            torch.zeros(n, dtype=torch.float32),
            torch.zeros(n, 2, dtype=torch.long),
            "labels",
            [[0]] * n,
        ]
    )


# --- negative_weights (Eq. 4) --------------------------------------------------------------


def eq4(sim: torch.Tensor, alpha: float, beta: float, t: float, floor: float) -> torch.Tensor:
    """Eq. 4 in float64, written out row by row (positives on the diagonal)."""
    n, m = sim.shape
    out = torch.ones(n, m, dtype=torch.float64)
    for i in range(n):
        negs = [j for j in range(m) if j != i]
        p = torch.softmax(sim[i, negs].double() / t, 0)
        denominator = beta - alpha / (m - 1) * float(p.sum())
        out[i, negs] = ((beta - alpha * p) / denominator).clamp_min(floor)
    return out


@FAST
@given(data=st.data(), sim=matrices())
def test_negative_weights_are_right_or_name_the_argument(data, sim):
    n, m = sim.shape
    kwargs = {
        "similarity": sim,
        "alpha": data.draw(st.floats(0, 3)),
        "beta": data.draw(st.floats(0.05, 3)),
        "temperature": data.draw(st.floats(0.05, 50)),
        "min_weight": data.draw(st.floats(0.01, 1)),
    }
    broken = data.draw(st.sampled_from([None, *kwargs, "positives"]))
    if broken == "similarity":
        kwargs["similarity"] = data.draw(bad_matrices((n, m)))
    elif broken == "positives":
        kwargs["positives"] = data.draw(bad_labels(n, m))
    elif broken == "min_weight":
        kwargs["min_weight"] = data.draw(st.sampled_from([0.0, 1.5, NAN, INF, "0.1", True]))
    elif broken == "alpha":
        kwargs["alpha"] = data.draw(BAD_NON_NEGATIVE)
    elif broken is not None:
        kwargs[broken] = data.draw(BAD_POSITIVE)
    weights, error = call(SF.negative_weights, **kwargs)
    if broken is not None:
        check_error(error, broken)
        return
    if error is not None:  # the one valid-looking refusal: Eq. 4's denominator
        check_error(error, "beta - alpha / (M - 1)")
        assert kwargs["beta"] - kwargs["alpha"] / (m - 1) <= 0
        return
    assert weights.dtype == torch.float32 and torch.isfinite(weights).all()
    want = eq4(sim, kwargs["alpha"], kwargs["beta"], kwargs["temperature"], kwargs["min_weight"])
    assert torch.allclose(weights.double(), want, rtol=1e-4, atol=1e-5)


# --- the functional losses -----------------------------------------------------------------


LOSSES = {
    "soft_infonce": SF.soft_infonce_loss,
    "weighted": SF.weighted_infonce_loss,
    "bce": SF.bce_soft_label_loss,
    "kl": SF.kl_regularized_infonce_loss,
}


def reference_loss(name: str, scores, other, labels, t: float) -> torch.Tensor:
    """Per-row losses in float64 from their definitions (Eq. 3 and Section 6)."""
    s = scores.double()
    n, m = s.shape
    log_p = torch.log_softmax(s, 1)
    if name == "soft_infonce":  # Eq. 3: cross-entropy on s + log w
        return -torch.log_softmax(s + other.double().log(), 1).gather(1, labels[:, None]).squeeze(1)
    positive = torch.zeros(n, m, dtype=torch.bool)
    positive[torch.arange(n), labels] = True
    q = torch.softmax((other.double() / t).masked_fill(positive, -INF), 1)
    if name == "weighted":
        return -log_p.gather(1, labels[:, None]).squeeze(1) - (q * log_p).sum(1)
    if name == "bce":  # log(1 - p_ij) exactly: log sum_{k != j} e^s_ik - log sum_k e^s_ik
        y = q.masked_fill(positive, 1.0)
        others = torch.stack(
            [torch.logsumexp(s.masked_fill(torch.arange(m) == j, -INF), 1) for j in range(m)], 1
        )
        log_not_p = others - torch.logsumexp(s, 1, keepdim=True)
        return -(y * log_p.clamp_min(-100) + (1 - y) * log_not_p.clamp_min(-100)).mean(1)
    log_p_neg = torch.log_softmax(s.masked_fill(positive, -INF), 1)
    kl = torch.where(q > 0, q * (q.clamp_min(1e-300).log() - log_p_neg), 0.0).sum(1)
    ce = -log_p.gather(1, labels[:, None]).squeeze(1)
    return 0.7 * ce + 1.3 * kl


@FAST
@given(data=st.data(), name=st.sampled_from(sorted(LOSSES)), scores=matrices(bound=20.0))
def test_functional_losses_are_right_or_name_the_argument(data, name, scores):
    n, m = scores.shape
    labels = torch.tensor(data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)))
    t = data.draw(st.floats(0.1, 10))
    if name == "soft_infonce":
        other = torch.tensor(
            data.draw(st.lists(st.floats(0.05, 3), min_size=n * m, max_size=n * m))
        ).view(n, m)
        kwargs = {"scores": scores, "weights": other, "labels": labels}
    else:
        other = torch.randn(n, m, generator=torch.Generator().manual_seed(n * 31 + m)) * 3
        kwargs = {"scores": scores, "similarity": other, "temperature": t, "labels": labels}
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    kwargs["reduction"] = reduction
    broken = data.draw(st.sampled_from([None, *kwargs] + (["kl_weight"] if name == "kl" else [])))
    if broken in ("scores", "similarity", "weights"):
        kwargs[broken] = data.draw(bad_matrices((n, m)))
        assume(not (broken == "weights" and kwargs[broken] is None))  # None means InfoNCE
    elif broken == "labels":
        kwargs["labels"] = data.draw(bad_labels(n, m))
    elif broken == "temperature":
        kwargs["temperature"] = data.draw(BAD_POSITIVE)
    elif broken == "reduction":
        kwargs["reduction"] = data.draw(st.sampled_from(["avg", None, 1, ["mean"]]))
    elif broken == "kl_weight":
        kwargs["kl_weight"] = data.draw(BAD_NON_NEGATIVE)
    loss, error = call(LOSSES[name], **kwargs)
    if broken is not None:
        # a shape error on the second matrix is reported against both names
        check_error(error, broken)
        return
    assert error is None, f"{type(error).__name__}: {error}"
    assert torch.isfinite(loss).all()
    per_row = reference_loss(name, scores, other, labels, t)
    want = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    assert torch.allclose(loss.double(), want, rtol=1e-4, atol=1e-4), (loss, want)


@FAST
@given(data=st.data(), sim=matrices(bound=10.0))
def test_cancellation_keeps_a_negative_per_row_or_names_the_argument(data, sim):
    n, m = sim.shape
    kwargs = {
        "similarity": sim,
        "mode": data.draw(st.sampled_from(["top_k", "threshold"])),
        "k": data.draw(st.integers(0, m - 2)),
        "ratio": data.draw(st.floats(0.01, 1.0)),
    }
    broken = data.draw(st.sampled_from([None, "similarity", "mode", "k", "ratio"]))
    if broken == "similarity":
        kwargs["similarity"] = data.draw(bad_matrices((n, m)))
    elif broken == "mode":
        kwargs["mode"] = data.draw(st.sampled_from(["topk", None, 3]))
    elif broken == "k":
        kwargs["mode"] = "top_k"
        kwargs["k"] = data.draw(st.sampled_from([m - 1, m, -1, 1.5, True, "1", None]))
    elif broken == "ratio":
        kwargs["mode"] = "threshold"
        kwargs["ratio"] = data.draw(st.sampled_from([0.0, 1.5, NAN, INF, "0.9", None]))
    weights, error = call(SF.cancellation_weights, **kwargs)
    if broken is not None:
        check_error(error, broken)
        return
    assert error is None, error
    negatives = ~torch.eye(n, m, dtype=torch.bool)
    assert set(weights.unique().tolist()) <= {0.0, 1.0}
    assert (weights[~negatives] == 1).all()
    assert ((weights * negatives).sum(1) >= 1).all()  # never a silent zero row
    loss = SF.soft_infonce_loss(torch.zeros(n, m), weights, reduction="none")
    assert (loss > 0).all()


# --- the loss modules ----------------------------------------------------------------------


def module_cases():
    from soft_infonce import losses as L

    return {
        "SoftInfoNCELoss": lambda: L.SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=1.0),
        "InfoNCELoss": lambda: L.InfoNCELoss(),
        "WeightedInfoNCELoss": lambda: L.WeightedInfoNCELoss(temperature=1.0),
        "BCELoss": lambda: L.BCELoss(temperature=1.0),
        "KLRegularizedInfoNCELoss": lambda: L.KLRegularizedInfoNCELoss(temperature=1.0),
        "FalseNegativeCancellationLoss": lambda: L.FalseNegativeCancellationLoss(k=1),
    }


@FAST
@given(
    data=st.data(),
    name=st.sampled_from(sorted(module_cases())),
    n=st.integers(2, 4),
    extra=st.integers(0, 3),
    h=st.integers(1, 6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_loss_modules_are_finite_with_gradients_or_name_the_argument(
    data, name, n, extra, h, dtype
):
    m = n + extra
    generator = torch.Generator().manual_seed(n * 100 + m * 10 + h)
    q = torch.randn(n, h, generator=generator, dtype=dtype, requires_grad=True)
    c = torch.randn(m, h, generator=generator, dtype=dtype, requires_grad=True)
    sim = torch.randn(n, m, generator=generator)
    loss_fn = module_cases()[name]()
    broken = data.draw(st.sampled_from([None, "query_embeddings", "code_embeddings", "similarity"]))
    assume(not (name == "InfoNCELoss" and broken == "similarity"))  # InfoNCE needs none
    args = [q, c, sim]
    if broken == "query_embeddings":
        args[0] = data.draw(
            st.sampled_from([q.detach().tolist(), torch.randn(n, h + 1), torch.randn(h), None])
        )
    elif broken == "code_embeddings":
        args[1] = data.draw(
            st.sampled_from([c.detach().tolist(), torch.randn(m, h + 1), torch.randn(n - 1, h)])
        )
    elif broken == "similarity":
        args[2] = data.draw(st.sampled_from([torch.randn(n, m + 1), torch.full((n, m), NAN)]))
    loss, error = call(loss_fn, *args)
    if broken is None and name == "FalseNegativeCancellationLoss" and m == 2:
        broken = "k"  # k = 1 would cancel the only negative: refused, naming k
    if broken is None and name == "SoftInfoNCELoss" and 0.7 - 1.3 / (m - 1) <= 0:
        broken = "beta - alpha / (M - 1)"  # Eq. 4 is undefined for so few negatives
    if broken is not None:
        check_error(error, broken, "similarity" if broken == "similarity" else broken)
        return
    assert error is None, f"{type(error).__name__}: {error}"
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(c.grad).all()


@pytest.mark.parametrize("name", sorted(set(module_cases()) - {"InfoNCELoss"}))
def test_loss_modules_name_a_list_given_for_similarity(name):
    loss_fn = module_cases()[name]()
    _, error = call(loss_fn, torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 3).tolist())
    check_error(error, "similarity")


# --- the estimators' __call__ --------------------------------------------------------------

TEXT = st.text(alphabet="abc xyz_(){}=.\n", min_size=1, max_size=20).filter(lambda s: s.strip())


@FAST
@given(
    data=st.data(),
    queries=st.lists(TEXT, min_size=1, max_size=4),
    codes=st.lists(TEXT, min_size=1, max_size=6),
    which=st.sampled_from(["bm25-query-code", "bm25-query-query", "uniform"]),
)
def test_estimators_return_finite_scores_or_name_the_argument(data, queries, codes, which):
    from soft_infonce.estimators import BM25Estimator, UniformEstimator

    estimator = {
        "bm25-query-code": lambda: BM25Estimator(side="query-code"),
        "bm25-query-query": lambda: BM25Estimator(side="query-query"),
        "uniform": UniformEstimator,
    }[which]()
    kwargs = {"queries": queries, "codes": codes, "candidate_queries": None}
    if which == "bm25-query-query":
        kwargs["candidate_queries"] = data.draw(
            st.lists(TEXT, min_size=len(codes), max_size=len(codes))
        )
    bad = st.sampled_from(["one string", [], [" "], ["ok", 3], ["ok", None], [b"x"], 7])
    broken = data.draw(st.sampled_from([None, "queries", "codes", "candidate_queries"]))
    if broken == "candidate_queries":
        kwargs[broken] = data.draw(st.one_of(bad, st.just(["a"] * (len(codes) + 1))))
    elif broken is not None:
        kwargs[broken] = data.draw(bad)
    scores, error = call(estimator, **kwargs)
    if broken is not None:
        check_error(error, broken)
        return
    assert error is None, f"{type(error).__name__}: {error}"
    assert scores.shape == (len(queries), len(codes)) and torch.isfinite(scores).all()
    if which == "uniform":
        assert (scores == 0).all()
    # The corpus is a set: reversing the candidates reverses the columns, nothing else.
    flipped = {
        "queries": queries,
        "codes": codes[::-1],
        "candidate_queries": (kwargs["candidate_queries"] or [])[::-1] or None,
    }
    assert torch.allclose(estimator(**flipped), scores.flip(1), rtol=1e-5, atol=1e-6)


# --- the loaders ---------------------------------------------------------------------------

VALUE = st.one_of(
    st.text(alphabet="ab \t", max_size=4),
    st.lists(st.text(alphabet="ab ", max_size=3), max_size=3),
    st.integers(-5, 5),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["k"]), st.integers(0, 2), max_size=1),
)
RECORD = st.dictionaries(st.sampled_from(["query", "code", "url"]), VALUE, max_size=3)
LINE = st.one_of(
    RECORD.map(json.dumps),
    RECORD.map(json.dumps),
    RECORD.map(json.dumps),
    st.sampled_from(["", "   ", "[1, 2]", '{"query": ', "null", '"text"', "{,}"]),
)


def expected_outcome(lines: list[str]):
    """What load_jsonl(path, extra_fields=("url",)) must do, by the documented rules:
    ("rows", rows) or ("error", line number or None, words that must be in the message)."""
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return "error", lineno, ["invalid JSON"]
        if not isinstance(record, dict):
            return "error", lineno, ["expected a JSON object"]
        texts = []
        for field in ("query", "code"):
            if field not in record:
                return "error", lineno, [f"missing field {field!r}"]
            value = record[field]
            if isinstance(value, list) and all(isinstance(x, str) for x in value):
                value = " ".join(value)
            if not isinstance(value, str):
                return "error", lineno, [f"field {field!r} must be a string"]
            texts.append(value)
        if "url" not in record:
            return "error", lineno, ["missing field 'url'"]
        if any(not text.strip() for text in texts):
            continue  # blank: skipped and counted
        rows.append({"query": texts[0], "code": texts[1], "url": record["url"]})
    if not rows:
        return "error", None, ["no records"]
    return "rows", rows


@settings(max_examples=60, deadline=None, database=None)
@given(lines=st.lists(LINE, min_size=1, max_size=6))
def test_loaders_load_the_right_rows_or_name_file_and_line(lines):
    from soft_infonce.codesearch.data.files import Skipped
    from soft_infonce.codesearch.data.loaders import load_jsonl

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pairs.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        skipped = Skipped()
        data, error = call(load_jsonl, path, extra_fields=("url",), skipped=skipped)
    outcome = expected_outcome(lines)
    if outcome[0] == "error" or error is not None:
        assert error is not None, f"expected {outcome}, loaded {data}"
        check_error(error, str(path))
        if outcome[0] == "error":
            _, lineno, words = outcome
            where = f"{path}:{lineno}" if lineno else str(path)
            assert where in str(error) and all(w in str(error) for w in words), (outcome, error)
        else:  # only arrow can refuse valid-looking rows: a url of mixed types, named
            assert "field 'url'" in str(error), error
            kinds = {type(row["url"]) for row in outcome[1] if row["url"] is not None}
            assert len(kinds) > 1 or any(isinstance(r["url"], (list, dict)) for r in outcome[1])
        return
    rows = outcome[1]
    assert data["query"] == [r["query"] for r in rows]
    assert data["code"] == [r["code"] for r in rows]
    blank = sum(1 for line in lines if line.strip()) - len(rows)
    assert skipped.total == blank


# --- target_ranks --------------------------------------------------------------------------


@FAST
@given(
    data=st.data(),
    n_queries=st.integers(1, 5),
    n_codes=st.integers(1, 9),
    dim=st.integers(1, 4),
    dtype=DTYPES,
    chunk=st.integers(1, 4),
    large=st.booleans(),
)
def test_target_ranks_are_right_or_name_the_argument(
    data, n_queries, n_codes, dim, dtype, chunk, large
):
    # Integer entries (x 64 when large: products beyond float16's range) are exact in every
    # dtype, so the ranks have one right answer, ties included.
    factor = 64.0 if large else 1.0
    ints = st.integers(-3, 3)
    q = torch.tensor(data.draw(st.lists(ints, min_size=n_queries * dim, max_size=n_queries * dim)))
    c = torch.tensor(data.draw(st.lists(ints, min_size=n_codes * dim, max_size=n_codes * dim)))
    q = (q.view(n_queries, dim) * factor).to(dtype)
    c = (c.view(n_codes, dim) * factor).to(dtype)
    targets = data.draw(
        st.lists(st.integers(0, n_codes - 1), min_size=n_queries, max_size=n_queries)
    )
    kwargs = {"query_embeddings": q, "code_embeddings": c, "targets": targets, "chunk_size": chunk}
    broken = data.draw(st.sampled_from([None, *kwargs, "cutoff"]))
    bad = {
        "query_embeddings": [q.tolist(), torch.zeros(n_queries, dim + 1),
                             torch.full((n_queries, dim), NAN)],
        "code_embeddings": [c.tolist(), torch.zeros(n_codes), torch.zeros(n_codes, dim + 2)],
        "targets": [[n_codes] * n_queries, [-1] * n_queries, [0] * (n_queries + 1),
                    ["a"] * n_queries, [0.5] * n_queries],
        "chunk_size": [0, -1, 1.5, True],
        "cutoff": [0, -2, 2.5],
    }  # fmt: skip
    if broken is not None:
        kwargs[broken] = data.draw(st.sampled_from(bad[broken]))
    ranks, error = call(target_ranks, **kwargs)
    if broken is not None:
        # a NaN embedding is named as the embeddings that gave NaN scores
        check_error(error, broken, "query_embeddings and code_embeddings")
        return
    assert error is None, f"{type(error).__name__}: {error}"
    scores = (q.double() @ c.double().T).tolist()
    want = [
        1 + sum(1 for j, v in enumerate(row) if v > row[t] or (v == row[t] and j != t))
        for row, t in zip(scores, targets)
    ]
    assert ranks.tolist() == want
    assert all(math.isfinite(r) for r in ranks.tolist())

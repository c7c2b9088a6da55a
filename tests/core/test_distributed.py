"""Negatives across devices: two gloo processes against one process that sees the global batch.

Why the expectation holds: process ``r`` computes ``L_r``, the mean over its ``N`` queries of
the loss against all ``2N`` gathered codes. The global loss over the ``2N`` queries is the mean
of the per-query losses, i.e. ``L = (L_0 + L_1) / 2``. The gather's backward sums each code
slice's gradient over the processes, so process ``r``'s parameter gradient is
``dL_r/dtheta (own queries) + d(L_0 + L_1)/dtheta (own codes)``, and DDP's all-reduce mean of the
two is ``d(L_0 + L_1)/dtheta / 2 = dL/dtheta``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from soft_infonce.distributed import gather_candidates, gather_objects, gather_with_grad
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.gradcache import grad_cached_step
from soft_infonce.losses import InfoNCELoss, SoftInfoNCELoss

WORLD, LOCAL = 2, 3
PAIRS = [
    ("read a json file", "json load open path"),
    ("sort a list", "return sorted list"),
    ("sort a list by key", "return sorted list key"),
    ("open a file", "return open path"),
    ("sum of a list", "return sum list"),
    ("read a file", "return open path read"),
]
QUERIES, CODES = [q for q, _ in PAIRS], [c for _, c in PAIRS]


def jaccard(a: str, b: str) -> float:
    sa, sb = set(a.split()), set(b.split())
    return len(sa & sb) / len(sa | sb)


class QueryCodeOverlap(WeightEstimator):
    """sim = word overlap of query i and code j (the texts, not the embeddings)."""

    def similarity(self, queries, codes, candidate_queries=None):
        return torch.tensor([[jaccard(q, c) for c in codes] for q in queries])


class QueryQueryOverlap(WeightEstimator):
    """sim = word overlap of query i and the query paired with code j."""

    requires_candidate_queries = True

    def similarity(self, queries, codes, candidate_queries=None):
        return torch.tensor([[2 * jaccard(q, p) for p in candidate_queries] for q in queries])


class BagOfWords(nn.Module):
    """A tiny bi-encoder with the BiEncoder forward signature (so grad_cached_step drives it)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(64, 12)
        self.projection = nn.Linear(12, 8)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        summed = (self.embedding(ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(self.projection(torch.tanh(summed)), dim=-1)

    def forward(self, query_input_ids, query_attention_mask, code_input_ids, code_attention_mask):
        return (
            self.encode(query_input_ids, query_attention_mask),
            self.encode(code_input_ids, code_attention_mask),
        )


def tokenize(texts: list[str], width: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = torch.zeros(len(texts), width, dtype=torch.long), torch.zeros(len(texts), width)
    for i, text in enumerate(texts):
        words = text.split()[:width]
        ids[i, : len(words)] = torch.tensor([sum(map(ord, w)) % 63 + 1 for w in words])
        mask[i, : len(words)] = 1.0
    return ids, mask


def batch(rows: slice) -> dict:
    (qi, qm), (ci, cm) = tokenize(QUERIES[rows]), tokenize(CODES[rows])
    return {
        "query_input_ids": qi,
        "query_attention_mask": qm,
        "code_input_ids": ci,
        "code_attention_mask": cm,
        "queries": QUERIES[rows],
        "codes": CODES[rows],
    }


NEGATIVE_OF = [(i + 2) % len(PAIRS) for i in range(len(PAIRS))]  # row i's mined negative


def hard_batch(rows: slice) -> dict:
    """Rows with one hard negative each: M = 2N candidates, column-major (PLAN interface 2)."""
    indices = list(range(len(PAIRS)))[rows]
    negatives = [NEGATIVE_OF[i] for i in indices]
    codes = [CODES[i] for i in indices] + [CODES[j] for j in negatives]
    (qi, qm), (ci, cm) = tokenize(QUERIES[rows]), tokenize(codes)
    return {
        "query_input_ids": qi,
        "query_attention_mask": qm,
        "code_input_ids": ci,
        "code_attention_mask": cm,
        "queries": QUERIES[rows],
        "codes": codes,
        "candidate_queries": QUERIES[rows] + [QUERIES[j] for j in negatives],
    }


HARD_RUNS = [
    ("soft_query_code", None),
    ("soft_query_query", None),
    ("soft_query_query", 2),
    ("infonce_symmetric", None),
]

CASES = {
    "infonce": lambda g: InfoNCELoss(scale=5.0, gather_across_devices=g),
    "infonce_symmetric": lambda g: InfoNCELoss(scale=5.0, symmetric=True, gather_across_devices=g),
    "soft_query_code": lambda g: SoftInfoNCELoss(
        1.3, 0.7, 0.2, scale=5.0, estimator=QueryCodeOverlap(), gather_across_devices=g
    ),
    "soft_query_query": lambda g: SoftInfoNCELoss(
        1.3, 0.7, 0.2, scale=5.0, estimator=QueryQueryOverlap(), gather_across_devices=g
    ),
    "soft_symmetric": lambda g: SoftInfoNCELoss(
        1.3,
        0.7,
        0.2,
        scale=5.0,
        symmetric=True,
        estimator=QueryCodeOverlap(),
        gather_across_devices=g,
    ),
}


def step(model: nn.Module, loss_fn: nn.Module, inputs: dict, mini_batch_size: int | None):
    """One forward/backward; returns (loss, gradients of the wrapped module)."""
    if mini_batch_size is None:
        tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        loss = loss_fn.compute_loss_from_embeddings(*model(**tensors), inputs)
        loss.backward()
    else:
        loss = grad_cached_step(model, loss_fn, inputs, mini_batch_size)
    module = getattr(model, "module", model)
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    module.zero_grad(set_to_none=True)
    return loss.detach(), grads


FSDP_RUNS = ["infonce", "soft_symmetric"]


def fully_shard_or_none(model: nn.Module) -> nn.Module | None:
    """``model`` under FSDP2 on the CPU (gloo), or None where this torch has no FSDP2."""
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        return None
    return fully_shard(model, mesh=init_device_mesh("cpu", (WORLD,)))


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        tensors, facts = {}, {}
        local = batch(slice(rank * LOCAL, (rank + 1) * LOCAL))
        model = nn.parallel.DistributedDataParallel(BagOfWords())
        runs = [(name, None) for name in CASES] + [("soft_symmetric", 2), ("soft_query_query", 2)]
        for name, mini in runs:
            loss, grads = step(model, CASES[name](True), local, mini)
            key = f"{name}/{mini}"
            tensors[f"{key}/loss"] = loss.reshape(1)
            tensors.update({f"{key}/grad/{n}": g for n, g in grads.items()})
        hard = hard_batch(slice(rank * LOCAL, (rank + 1) * LOCAL))
        for name, mini in HARD_RUNS:
            loss, grads = step(model, CASES[name](True), hard, mini)
            key = f"hard/{name}/{mini}"
            tensors[f"{key}/loss"] = loss.reshape(1)
            tensors.update({f"{key}/grad/{n}": g for n, g in grads.items()})
        for name in FSDP_RUNS:  # FSDP2 shards the parameters; the gather acts on embeddings
            fsdp = fully_shard_or_none(BagOfWords())
            if fsdp is None:
                break
            tensors_in = {k: v for k, v in local.items() if isinstance(v, torch.Tensor)}
            CASES[name](True).compute_loss_from_embeddings(*fsdp(**tensors_in), local).backward()
            for n, p in fsdp.named_parameters():
                tensors[f"fsdp/{name}/grad/{n}"] = p.grad.full_tensor().contiguous()
        # The candidates: offsets, texts in rank order, gradients summed over processes.
        x = torch.full((2, 3), float(rank + 1), requires_grad=True)
        g = gather_candidates(x, QUERIES[rank * 2 : rank * 2 + 2], ["c"] * 2, None)
        (g.embeddings * torch.arange(1.0, 5.0)[:, None]).sum().backward()
        tensors["x_grad"] = x.grad
        facts.update(
            offset=g.offset,
            texts=g.code_texts,
            queries=g.query_texts,
            candidate_queries=g.candidate_query_texts,
            objects=gather_objects([rank, "r"]),
            gathered=g.embeddings[:, 0].tolist(),
        )
        try:
            gather_with_grad(torch.zeros(rank + 1, 2))
        except ValueError as error:
            facts["shape_error"] = str(error)
        save_file(tensors, os.path.join(out, f"rank{rank}.safetensors"))
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump(facts, handle)
        dist.barrier()  # no process tears down its sockets while another still reads
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[tuple[dict, dict]]:
    out = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(str(out / "store"), str(out)), nprocs=WORLD, join=True)
    results = []
    for r in range(WORLD):
        with open(out / f"rank{r}.json") as handle:
            results.append((load_file(str(out / f"rank{r}.safetensors")), json.load(handle)))
    return results


@pytest.mark.parametrize(
    "name, mini",
    [(name, None) for name in CASES] + [("soft_symmetric", 2), ("soft_query_query", 2)],
)
def test_two_processes_match_one_process_with_the_global_batch(ranks, name, mini) -> None:
    loss, grads = step(BagOfWords(), CASES[name](True), batch(slice(0, WORLD * LOCAL)), None)
    key = f"{name}/{mini}"
    local_losses = [r[0][f"{key}/loss"].item() for r in ranks]
    assert sum(local_losses) / WORLD == pytest.approx(loss.item(), abs=1e-5)
    for tensors, _ in ranks:  # DDP leaves the same averaged gradient on every process
        for n, expected in grads.items():
            torch.testing.assert_close(
                tensors[f"{key}/grad/{n}"], expected, atol=1e-5, rtol=1e-5, msg=n
            )
    # Without the gather each process would see only its own codes: a different loss.
    shards = [batch(slice(r * LOCAL, (r + 1) * LOCAL)) for r in range(WORLD)]
    alone = [step(BagOfWords(), CASES[name](False), shard, None)[0] for shard in shards]
    assert abs(sum(alone).item() / WORLD - loss.item()) > 1e-2


@pytest.mark.parametrize("name", FSDP_RUNS)
def test_fsdp_sharded_parameters_get_the_global_batch_gradient(ranks, name) -> None:
    """Under FSDP2 (parameters sharded, gradients reduce-scattered as a mean) the gathered loss
    gives the gradient of one process with the global batch, as under DDP."""
    if f"fsdp/{name}/grad/projection.weight" not in ranks[0][0]:
        pytest.skip("this torch has no FSDP2 (torch.distributed.fsdp.fully_shard)")
    _, grads = step(BagOfWords(), CASES[name](True), batch(slice(0, WORLD * LOCAL)), None)
    for tensors, _ in ranks:
        for n, expected in grads.items():
            torch.testing.assert_close(
                tensors[f"fsdp/{name}/grad/{n}"], expected, atol=1e-5, rtol=1e-5, msg=n
            )


@pytest.mark.parametrize("name, mini", HARD_RUNS)
def test_hard_negative_columns_gather_like_one_process(ranks, name, mini) -> None:
    """With M = 2N candidates per process, two processes equal one process whose batch holds
    the global rows and all their negatives (the candidate order differs; the loss does not
    depend on the order of the negatives)."""
    loss, grads = step(BagOfWords(), CASES[name](True), hard_batch(slice(0, WORLD * LOCAL)), None)
    key = f"hard/{name}/{mini}"
    local_losses = [r[0][f"{key}/loss"].item() for r in ranks]
    assert sum(local_losses) / WORLD == pytest.approx(loss.item(), abs=1e-5)
    for tensors, _ in ranks:
        for n, expected in grads.items():
            torch.testing.assert_close(
                tensors[f"{key}/grad/{n}"], expected, atol=1e-5, rtol=1e-5, msg=n
            )
    in_batch = step(BagOfWords(), CASES[name](True), batch(slice(0, WORLD * LOCAL)), None)[0]
    assert abs(in_batch.item() - loss.item()) > 1e-3  # the negatives took part


def test_gather_candidates_offsets_texts_and_gradients(ranks) -> None:
    for r, (tensors, facts) in enumerate(ranks):
        assert facts["offset"] == 2 * r
        assert facts["gathered"] == [1.0, 1.0, 2.0, 2.0]
        assert facts["queries"] == QUERIES[:4] and facts["texts"] == ["c"] * 4
        assert facts["candidate_queries"] is None
        assert facts["objects"] == [0, "r", 1, "r"]
        # Each process's loss is sum_k k * gathered_k (k = 1..4); rank r's rows are gathered
        # rows 2r + 1 and 2r + 2, and both processes' losses reach them: twice the weight.
        expected = 2 * torch.tensor([[2.0 * r + 1], [2.0 * r + 2]])
        torch.testing.assert_close(tensors["x_grad"], expected.expand(2, 3))


def test_shape_mismatch_raises_on_every_process(ranks) -> None:
    for _, facts in ranks:
        assert "same batch shape on every process, got [(1, 2), (2, 2)]" in facts["shape_error"]


def test_single_process_is_the_identity() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    assert gather_objects(["a", "b"]) == ["a", "b"] and gather_objects(None) is None
    g = gather_candidates(x, ["q"] * 3, ["c"] * 3, None)
    assert g.embeddings is x and g.offset == 0 and g.code_texts == ["c"] * 3
    assert g.query_texts == ["q"] * 3 and not g.gathered


def test_gathering_in_one_process_warns_once(caplog) -> None:
    """gather_across_devices=True without a process group gathers nothing: say so, once."""
    inputs = batch(slice(0, LOCAL))
    model = BagOfWords()
    with caplog.at_level(logging.WARNING, logger="soft_infonce.losses.base"):
        gathering = CASES["soft_query_code"](True)
        losses = [step(model, gathering, inputs, None)[0] for _ in range(3)]
    warnings = [r for r in caplog.records if "runs in a single process" in r.getMessage()]
    assert len(warnings) == 1 and "SoftInfoNCELoss(gather_across_devices=True)" in caplog.text
    alone = step(model, CASES["soft_query_code"](False), inputs, None)[0]
    assert all(loss == alone for loss in losses)  # the same loss: nothing was gathered
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soft_infonce.losses.base"):
        step(model, CASES["soft_query_code"](False), inputs, None)
    assert not caplog.records  # no warning without the setting


# -- the Trainer under torchrun -------------------------------------------------------------
TRAINER_STEPS = 2


def _train(
    out: str, per_device: int, mini_batch_size: int | None = None
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Two SGD steps of SoftInfoNCETrainer (gather_across_devices) on a tiny BERT; the
    sampler is sequential so that 2 x 4 and 1 x 8 see the same global batches. Returns the
    parameters before and after."""
    import datasets
    from torch.utils.data import SequentialSampler
    from transformers import BertConfig, BertModel, BertTokenizer

    from soft_infonce.integrations.hf.modeling import BiEncoder
    from soft_infonce.integrations.hf.trainer import (
        SoftInfoNCETrainer,
        SoftInfoNCETrainingArguments,
    )

    class SequentialTrainer(SoftInfoNCETrainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    words = sorted({w for q, c in PAIRS for w in (q + " " + c).split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BiEncoder(BertModel(config), BertTokenizer(vocab=vocab), normalize=True, scale=20.0)
    args = SoftInfoNCETrainingArguments(
        output_dir=os.path.join(out, "trainer"),
        per_device_train_batch_size=per_device,
        learning_rate=0.05,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        max_steps=TRAINER_STEPS,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        loss="soft",
        estimator="uniform",
        max_query_length=8,
        max_code_length=8,
        gather_across_devices=True,
        mini_batch_size=mini_batch_size,
        dataloader_drop_last=True,
        seed=7,
    )
    loss = SoftInfoNCELoss(
        1.3, 0.7, 0.2, scale=20.0, estimator=QueryCodeOverlap(), gather_across_devices=True
    )
    pairs = [{"query": q, "code": c} for q, c in PAIRS] + [
        {"query": c, "code": q} for q, c in PAIRS
    ]
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    SequentialTrainer(
        model, args, train_dataset=datasets.Dataset.from_list(pairs[:8]), loss=loss
    ).train()
    return before, {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_trainer_under_torchrun_matches_one_process(tmp_path) -> None:
    """2 processes x 4 pairs, plain and gradient-cached (mini-batches of 2), against one
    process x 8 pairs: the same weights after two SGD steps."""
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        __file__,
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    before, expected = _train(str(tmp_path / "single"), per_device=WORLD * 4)
    for mini_batch_size in (None, 2):
        distributed = load_file(str(tmp_path / f"trainer-{mini_batch_size}.safetensors"))
        for name, value in expected.items():
            torch.testing.assert_close(
                distributed[name], value, atol=1e-5, rtol=1e-5, msg=f"{mini_batch_size} {name}"
            )
    moved = max((expected[k] - before[k]).abs().max().item() for k in expected)
    assert moved > 1e-3  # the two steps changed the weights: the match is not vacuous


if __name__ == "__main__":  # run by torchrun in test_trainer_under_torchrun_matches_one_process
    torch.set_num_threads(1)
    for mini_batch_size in (None, 2):
        _, params = _train(sys.argv[1], per_device=4, mini_batch_size=mini_batch_size)
        if dist.get_rank() == 0:
            save_file(params, os.path.join(sys.argv[1], f"trainer-{mini_batch_size}.safetensors"))
    dist.barrier()  # no process tears down its sockets while another still reads
    dist.destroy_process_group()

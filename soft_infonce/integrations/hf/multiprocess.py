"""What a multi-process run needs beyond the loss's gathers (:mod:`soft_infonce.distributed`).

- :func:`check_launch`: a launcher started several processes but the arguments did not set up
  a process group (``torchrun`` on CPU without ``--use_cpu true``): an error that says how to
  fix it, instead of ``W`` independent copies that each train on all the data and write the
  same files.
- :func:`reduce_statistics`: the loss's weight statistics averaged over the processes (min
  and max taken over them), at log time only.
- :func:`evaluate_retrieval_sharded`: every process encodes its share of the queries and of
  the code base; the code embeddings and the ranks are gathered, so each process reports the
  metrics of the whole set (the same numbers as one process) at ``1 / W`` of the encoding.

Every function is the plain single-process computation when no process group is initialised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from soft_infonce.distributed import gather_objects, rank, world_size

if TYPE_CHECKING:
    from soft_infonce.integrations.hf.modeling import BiEncoder

__all__ = [
    "check_launch",
    "evaluate_retrieval_sharded",
    "gather_rows",
    "launched_world_size",
    "reduce_statistics",
    "shard",
]

logger = logging.getLogger(__name__)

# The variables a launcher sets to the number of processes it started: torchrun / accelerate
# (WORLD_SIZE), Intel MPI / MPICH (PMI_SIZE), Open MPI, MVAPICH2.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_FIX = (
    "On CPU pass --use_cpu true (SoftInfoNCETrainingArguments(use_cpu=True)), so that the "
    "Trainer initialises a gloo process group: torchrun --nproc_per_node 2 "
    "examples/run_codesearch.py ... --use_cpu true. On GPUs check that every process sees a "
    "GPU (CUDA_VISIBLE_DEVICES). Or call torch.distributed.init_process_group before building "
    "the arguments. See docs/distributed.md."
)


def launched_world_size() -> int:
    """The number of processes a launcher says it started (1 when none did)."""
    for name in _WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise ValueError(
                    f"environment variable {name} must be an int, got {value!r}"
                ) from None
    return 1


def check_launch(trainer_world_size: int) -> None:
    """Refuse a launch whose processes would not train together.

    Args:
        trainer_world_size: the processes the training arguments set up
            (``TrainingArguments.world_size``).

    Raises:
        RuntimeError: the launcher started ``W > 1`` processes (``WORLD_SIZE``) but no
            process group covers them (``torchrun`` without ``--use_cpu true`` on a machine
            without GPUs): every process would train alone on all the data.
    """
    launched = launched_world_size()
    if launched > 1 and (trainer_world_size != launched or world_size() != launched):
        state = (
            "not initialised"
            if world_size() == 1 and not (dist.is_available() and dist.is_initialized())
            else f"initialised with {world_size()} process(es) while the Trainer uses "
            f"{trainer_world_size}"
        )
        raise RuntimeError(
            f"A launcher started {launched} processes (WORLD_SIZE={launched}) but "
            f"torch.distributed is {state}: each process would train alone on all the data "
            f"and write the same outputs. {_FIX}"
        )
    # accelerate's simple launcher runs ONE process for --num_processes N --cpu (or N > the
    # GPUs it found); it sets MASTER_PORT only when asked for more than one process.
    if (
        launched == 1
        and trainer_world_size == 1
        and "ACCELERATE_DYNAMO_BACKEND" in os.environ
        and "MASTER_PORT" in os.environ
    ):
        logger.warning(
            "accelerate launch asked for several processes but started one: this run is not "
            "distributed. On CPU use `accelerate launch --multi_gpu --num_processes N ... "
            "--use_cpu true` or `torchrun --nproc_per_node N ... --use_cpu true` "
            "(docs/distributed.md)."
        )


def reduce_statistics(statistics: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average statistics over the processes; keys ending in ``_min``/``_max`` take the
    minimum/maximum. Three collectives (one per kind) on the statistics' device; call it at
    log time, on every process, with the same keys.

    Args:
        statistics: 0-d tensors (sums or means: the mean over processes is taken).

    Returns:
        The reduced statistics (the input as a dict with one process).

    Raises:
        ValueError: the processes hold different keys (on every process, instead of a hang).
    """
    if world_size() == 1 or not statistics:
        return dict(statistics)
    keys = sorted(statistics)
    everyone = gather_objects([keys])
    if any(k != keys for k in everyone):  # type: ignore[union-attr]
        raise ValueError(f"statistics must have the same keys on every process, got {everyone}")
    out: dict[str, torch.Tensor] = {}
    for suffix, op in (("_min", dist.ReduceOp.MIN), ("_max", dist.ReduceOp.MAX), ("", None)):
        group = [k for k in keys if k not in out and (k.endswith(suffix) if suffix else True)]
        if not group:
            continue
        values = torch.stack([statistics[k].detach().float().reshape(()) for k in group])
        dist.all_reduce(values, op=dist.ReduceOp.SUM if op is None else op)
        if op is None:
            values /= world_size()
        out.update(zip(group, values.unbind()))
    return out


def shard(total: int, processes: int | None = None, index: int | None = None) -> slice:
    """This process's contiguous share of ``total`` items: the first ``total % W`` processes
    take one more item than the others."""
    processes = world_size() if processes is None else processes
    index = rank() if index is None else index
    size, extra = divmod(total, processes)
    start = index * size + min(index, extra)
    return slice(start, start + size + (1 if index < extra else 0))


def gather_rows(tensor: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate the :func:`shard` rows of ``total`` items held by the processes, in rank
    order (no gradient). Shares may differ by one row: they are padded for the gather.

    Args:
        tensor: ``[len(shard(total)), ...]`` on the device the backend uses.
        total: the number of rows over all processes.

    Returns:
        ``[total, ...]`` on ``tensor``'s device.
    """
    processes = world_size()
    if processes == 1:
        return tensor
    sizes = [len(range(total)[shard(total, processes, r)]) for r in range(processes)]
    if tensor.shape[0] != sizes[rank()]:
        raise ValueError(
            f"tensor must hold this process's {sizes[rank()]} rows, got {tensor.shape[0]}"
        )
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(processes)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def evaluate_retrieval_sharded(
    model: BiEncoder,
    queries: Sequence[str],
    codes: Sequence[str],
    relevant: Sequence[int] | torch.Tensor,
    **kwargs: Any,
) -> dict[str, float]:
    """:func:`~soft_infonce.integrations.hf.evaluation.evaluate_retrieval` with the encoding split
    over the
    processes.

    Process ``r`` encodes its :func:`shard` of the queries and of the codes; the code
    embeddings are all-gathered, each process ranks its own queries against the whole code
    base with :func:`~soft_infonce.metrics.target_ranks`, and the ranks are gathered, so
    every process returns the metrics of all the queries. Call it on every process.

    Args:
        model: the bi-encoder (the same weights on every process).
        queries: the query texts, as for ``evaluate_retrieval``.
        codes: the code base.
        relevant: the index in ``codes`` of each query's true code.
        **kwargs: ``batch_size``, ``max_query_length``, ``max_code_length``, ``cutoff``,
            ``show_progress``.

    Returns:
        ``{"mrr", "recall@1", "recall@5", "recall@10", "num_queries"}``.
    """
    from soft_infonce.integrations.hf.evaluation import evaluate_retrieval
    from soft_infonce.metrics import retrieval_metrics, target_ranks

    if world_size() == 1:
        return evaluate_retrieval(model, queries, codes, relevant, **kwargs)
    if len(relevant) != len(queries) or not queries or not codes:
        raise ValueError(
            "queries and codes must be non-empty with one relevant code per query, got "
            f"{len(queries)} queries, {len(codes)} codes, {len(relevant)} relevant"
        )
    cutoff = kwargs.pop("cutoff", None)
    encode = {
        "batch_size": kwargs.pop("batch_size", 64),
        "show_progress": kwargs.pop("show_progress", False) and rank() == 0,
    }
    query_length = kwargs.pop("max_query_length", 128)
    code_length = kwargs.pop("max_code_length", 256)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
    device = getattr(model, "device", torch.device("cpu"))
    mine_q, mine_c = shard(len(queries)), shard(len(codes))
    targets = torch.as_tensor(relevant).long()[mine_q]
    q = model.encode_texts(list(queries)[mine_q], side="query", max_length=query_length, **encode)
    c = model.encode_texts(list(codes)[mine_c], side="code", max_length=code_length, **encode)
    q, c = q.to(device), c.to(device)
    all_codes = gather_rows(c, len(codes))  # (n_codes, H), in the input order
    ranks = (
        target_ranks(q, all_codes, targets, cutoff=cutoff, scale=model.scale)
        if len(targets)
        else torch.empty(0, dtype=torch.long, device=device)
    )
    return retrieval_metrics(gather_rows(ranks, len(queries)).cpu(), cutoff=cutoff)

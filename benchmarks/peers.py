"""The peers a user would pick instead, through sentence-transformers' own trainer (issue 18).

``mnrl`` (``MultipleNegativesRankingLoss``, scale 20 = our cosine x 20), ``gist``
(``GISTEmbedLoss`` as shipped: guide = the same frozen all-MiniLM-L6-v2 the SimCSE-style
estimator reads, temperature 0.05 = scale 20; it also contrasts query-query and code-code
in-batch pairs) and ``gist-qc`` (GIST with query->code negatives only, as InfoNCE). Every
benchmark that trains our losses trains these on the same rows, seeds and validation rule
(``KeepBest``), and, given a batch sampler, on the very same batches.
"""

from __future__ import annotations

import time

import quality
from transformers import TrainerCallback, set_seed

ST_LOSSES = ("gist", "gist-qc", "mnrl")


class KeepBest(TrainerCallback):
    """Validation MRR after every epoch (and every ``every`` steps inside one); keeps the best
    weights; times the training steps."""

    def __init__(self, model, view, valid, args, *, every: int | None = None) -> None:
        self.model, self.view, self.valid, self.args = model, view, valid, args
        self.best, self.best_epoch, self.weights, self.curve = -1.0, None, None, []
        self.step_seconds: list[float] = []
        self.every = every

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds.append(time.perf_counter() - self._t0)
        per_epoch = max(1, round(state.max_steps / max(args.num_train_epochs, 1)))
        step = state.global_step
        if self.every and step % self.every == 0 and step % per_epoch and step < state.max_steps:
            self.on_epoch_end(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        was_training = self.model.training
        ranks = quality.ranks_of(self.view(), self.valid, self.args)
        mrr = float((1.0 / ranks.double()).mean())
        self.model.train(was_training)
        epoch = round(float(state.epoch or 0), 3)
        self.curve.append({"epoch": epoch, "valid_mrr": mrr})
        if mrr > self.best:
            self.best, self.best_epoch = mrr, epoch
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def st_columns(queries, codes, negatives=None) -> dict[str, list[str]]:
    """sentence-transformers' column layout: anchor, positive, then negative_1..k (by order)."""
    columns = {"anchor": list(queries), "positive": list(codes)}
    k = len(negatives[0]) if negatives is not None and len(negatives) else 0
    for j in range(k):
        columns[f"negative_{j + 1}"] = [row[j] for row in negatives]
    return columns


def train_peer(
    spec: str,
    columns: dict,
    valid,
    seed: int,
    args,
    training_args: dict,
    *,
    sampler=None,
    every: int | None = None,
):
    """Train ``spec`` (one of ``ST_LOSSES``) with ``SentenceTransformerTrainer``.

    Args:
        columns: ``st_columns(...)``; valid: the RetrievalSet that picks the checkpoint;
        training_args: ``SentenceTransformerTrainingArguments`` keywords;
        sampler: a batch sampler every run shares (None: sentence-transformers' own shuffle);
        every: validate every this many steps too (``KeepBest``).

    Returns:
        (a BiEncoder view of the best weights, the ``KeepBest`` callback).
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses

    from soft_infonce.integrations.hf.modeling import BiEncoder

    if spec not in ST_LOSSES:
        raise ValueError(f"peer {spec!r} is not one of {ST_LOSSES}")
    set_seed(seed)
    st = SentenceTransformer(quality.model_path(), device="cpu")
    st.max_seq_length = args.max_code_length
    if spec.startswith("gist"):
        guide = SentenceTransformer(quality.model_path(), device="cpu")
        guide.max_seq_length = args.max_code_length
        full = spec == "gist"
        loss = losses.GISTEmbedLoss(
            st, guide, temperature=0.05, contrast_anchors=full, contrast_positives=full
        )
    else:
        loss = losses.MultipleNegativesRankingLoss(st, scale=20.0)

    def view() -> BiEncoder:
        return BiEncoder(
            st[0].auto_model, st[0].tokenizer, pooling="mean", normalize=True, scale=20.0
        )

    if sampler is not None:
        training_args = training_args | {"batch_sampler": lambda *a, **k: sampler}
    keep = KeepBest(st, view, valid, args, every=every)
    SentenceTransformerTrainer(
        model=st,
        args=SentenceTransformerTrainingArguments(**training_args),
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        callbacks=[keep],
    ).train()
    st.load_state_dict(keep.weights)
    return view(), keep

"""Hugging Face ``transformers``: the bi-encoder, its collator, the Trainer and its arguments.

* ``modeling/``: :class:`~soft_infonce.integrations.hf.modeling.BiEncoder`, input layouts,
  saving (a folder that also loads in sentence-transformers) and the model card;
* ``collator.py``: :class:`~soft_infonce.integrations.hf.collator.BiEncoderCollator`;
* ``training_args.py``, ``trainer.py``: ``SoftInfoNCETrainingArguments`` and
  ``SoftInfoNCETrainer``;
* ``retrieval.py``, ``evaluation.py``, ``multiprocess.py``: the retrieval evaluation the Trainer
  runs (on one process or split across several);
* ``checkpoints.py``: finding the last completely written checkpoint to resume from;
* ``trained_estimator.py``, ``ema_estimator.py``: weight estimators built on a ``BiEncoder``.
"""

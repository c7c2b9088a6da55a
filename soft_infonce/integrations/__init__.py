"""Integrations: the core's losses and estimators inside other libraries' training loops.

* :mod:`soft_infonce.integrations.hf`: Hugging Face ``transformers`` (``BiEncoder``,
  ``SoftInfoNCETrainer`` and its arguments, the collator, retrieval evaluation);
* :mod:`soft_infonce.integrations.sentence_transformers`: losses for
  ``SentenceTransformerTrainer`` (extra ``sentence-transformers``).

Modules here import the core and their own framework, never :mod:`soft_infonce.codesearch`.
"""

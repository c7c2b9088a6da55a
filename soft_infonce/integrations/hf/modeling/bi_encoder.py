"""The bi-encoder: one shared (Siamese) transformer that embeds queries and code.

Scores are ``s_ij = scale * q_i . c_j`` (the ``s`` of Eq. 3 in Li et al., EMNLP 2023). The
pooling modes follow the reference code-search scripts: ``"pooler"`` is the encoder's
``pooler_output`` (CodeBERT / GraphCodeBERT), ``"cls"`` the first token's last hidden state and
``"mean"`` the attention-masked mean of the last hidden states (UniXcoder, MiniLM). How texts
become tensors, and how the encoder reads them, is the input layout's job
(:mod:`soft_infonce.integrations.hf.modeling.layouts`); the model holds one layout and never
branches on it.

Over 300 lines for one reason: this is the one public class users meet first, and most of the
file is its docstrings (saving and loading live in ``saving.py``, batched embedding in
``batching.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soft_infonce.integrations.hf.modeling.batching import encode_in_batches
from soft_infonce.integrations.hf.modeling.folder import SETTINGS
from soft_infonce.integrations.hf.modeling.layouts import SIDES, Encoded, InputLayout, make_layout
from soft_infonce.integrations.hf.modeling.saving import accept_encoder_state_dict

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "pooler")
INPUT_LAYOUTS = ("plain", "unixcoder", "graphcodebert")
# ^ what bi_encoder.json holds


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


class BiEncoder(nn.Module):
    """A Siamese bi-encoder for natural-language-to-code retrieval.

    Args:
        encoder: A transformers encoder (``AutoModel``), shared by queries and code.
        tokenizer: Its tokenizer; needed by ``tokenize``, ``encode_texts`` and saving (held by
            the input layout; ``None`` when the layout object brings its own).
        pooling: ``"mean"`` (attention-masked mean), ``"cls"`` (first token) or ``"pooler"``
            (the encoder's ``pooler_output``, as the CodeBERT / GraphCodeBERT scripts).
        normalize: L2-normalise the pooled embeddings (cosine scores).
        scale: Multiplier of the dot product, ``s = scale * q @ c.T`` (UniXcoder: cosine x 20).
        input_layout: ``"plain"``, ``"unixcoder"``, ``"graphcodebert"`` or an
            :class:`~soft_infonce.integrations.hf.modeling.layouts.InputLayout` object (see that
            module).
        language: The code's language, for ``"graphcodebert"`` given by name (python, java,
            javascript, php, go or ruby).
        data_flow_length: Data-flow nodes per code, for ``"graphcodebert"`` given by name (64
            in its paper when ``None``).

    Examples:
        >>> model = BiEncoder.from_pretrained("all-MiniLM-L6-v2/", normalize=True)  # doctest: +SKIP
        >>> q = model.encode_texts(["read a json file"], side="query")  # doctest: +SKIP
        >>> c = model.encode_texts(["def load(p): ..."], side="code")  # doctest: +SKIP
        >>> model.similarity(q, c).shape  # doctest: +SKIP
        torch.Size([1, 1])
    """

    def __init__(
        self,
        encoder: Any,
        tokenizer: Any = None,
        pooling: Literal["mean", "cls", "pooler"] = "mean",
        normalize: bool = False,
        scale: float = 1.0,
        input_layout: Literal["plain", "unixcoder", "graphcodebert"] | InputLayout = "plain",
        language: str | None = None,
        data_flow_length: int | None = None,
    ) -> None:
        super().__init__()
        _check_choice("pooling", pooling, POOLING_MODES)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be a bool, got {normalize!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < 1e30:
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if pooling == "pooler" and hasattr(encoder, "pooler") and encoder.pooler is None:
            raise ValueError(
                "pooling='pooler' needs an encoder with a pooling layer, got "
                f"{type(encoder).__name__} built without one (pooler is None)"
            )
        self.layout = make_layout(
            input_layout, tokenizer, language=language, data_flow_length=data_flow_length
        )
        self.encoder = encoder
        self.register_load_state_dict_pre_hook(accept_encoder_state_dict)
        self.pooling = pooling
        self.normalize = normalize
        self.scale = float(scale)

    # ------------------------------------------------------------------ configuration
    @property
    def tokenizer(self) -> Any:
        """The tokenizer (the input layout's)."""
        return self.layout.tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Any) -> None:
        self.layout.tokenizer = tokenizer

    @property
    def input_layout(self) -> str:
        """The input layout's name (``self.layout`` is the object)."""
        return self.layout.name

    @property
    def language(self) -> str | None:
        """The code's language (GraphCodeBERT's layout), else ``None``."""
        return self.layout.get_config_dict()["language"]

    @property
    def data_flow_length(self) -> int:
        """Data-flow nodes per code (GraphCodeBERT's layout; 64 in the file otherwise)."""
        return self.layout.get_config_dict()["data_flow_length"]

    def get_config_dict(self) -> dict[str, Any]:
        """The settings saved in ``bi_encoder.json``."""
        config = {"pooling": self.pooling, "normalize": self.normalize, "scale": self.scale}
        config.update(self.layout.get_config_dict())
        return config

    @property
    def device(self) -> torch.device:
        """The device of the encoder's first parameter."""
        return next(self.encoder.parameters()).device

    @property
    def embedding_dim(self) -> int:
        """Width of the pooled embeddings (the encoder's hidden size)."""
        return int(self.encoder.config.hidden_size)

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        """Forwarded to the encoder (used by ``transformers.Trainer``)."""
        self.encoder.gradient_checkpointing_enable(**kwargs)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, local_files_only: bool = True, **overrides: Any
    ) -> BiEncoder:
        """Load the encoder, its tokenizer and its settings, the folder checked whole first.

        The settings come from ``bi_encoder.json``; a folder without it but with
        sentence-transformers modules takes pooling and normalisation from those (``scale``
        stays 1.0, with a warning); a plain transformers folder gets the defaults. A missing
        or broken part (weights, tokenizer vocabulary, a module's files), or settings that
        disagree between ``bi_encoder.json`` and the modules, raise
        :class:`~soft_infonce.integrations.hf.modeling.integrity.ModelFolderError` naming
        the file.

        Args:
            path: A local directory; a Hub model name only with ``local_files_only=False``.
            local_files_only: Never touch the network (the default).
            **overrides: ``pooling``, ``normalize``, ``scale``, ``input_layout``, ``language``,
                ``data_flow_length``; they win over ``bi_encoder.json``.

        Returns:
            The bi-encoder. Remote code is never trusted.
        """
        from soft_infonce.integrations.hf.modeling.integrity import settings_error
        from soft_infonce.integrations.hf.modeling.saving import load_parts

        unknown = sorted(set(overrides) - set(SETTINGS))
        if unknown:
            raise ValueError(f"overrides must be among {list(SETTINGS)}, got {unknown!r}")
        encoder, tokenizer, settings = load_parts(
            path, local_files_only=local_files_only, given=set(overrides)
        )
        if isinstance(overrides.get("input_layout"), InputLayout):  # it holds its own settings
            settings.pop("language", None)
            settings.pop("data_flow_length", None)
        from_file = set(settings) - set(overrides)
        settings.update(overrides)
        try:
            return cls(encoder, tokenizer, **settings)
        except ValueError as error:
            raise settings_error(error, path, from_file) from None

    def save_pretrained(
        self,
        path: str | os.PathLike,
        *,
        model_card: Mapping[str, Any] | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        """Write a folder that ``BiEncoder.from_pretrained`` and ``SentenceTransformer`` load.

        The folder holds the encoder (``config.json``, safetensors), the tokenizer,
        ``bi_encoder.json``, the sentence-transformers modules (``modules.json``,
        ``1_Pooling/``, ``2_Dense/`` for ``pooling="pooler"``, ``Normalize``, prompts for a
        layout with a fixed prefix) and a ``README.md`` model card. Upload it with
        ``huggingface_hub.HfApi().upload_folder(folder_path=path, repo_id="me/model")`` (or
        ``SentenceTransformer(path).push_to_hub("me/model")``).

        Args:
            path: The folder (created if needed).
            model_card: Facts for the card: ``base_model``, ``loss``, ``estimator`` (a name or a
                mapping of settings), ``train_size``, ``eval_size``, ``eval_metrics`` (the last
                validation metrics), ``max_query_length``, ``max_code_length``, ...; every other
                key is listed as a training setting.
            max_seq_length: The truncation length written for sentence-transformers; defaults
                to ``model_card["max_code_length"]``, else 256 (capped by the encoder's positions).
        """
        from soft_infonce.integrations.hf.modeling.saving import save_folder

        save_folder(self, path, model_card=model_card, max_seq_length=max_seq_length)

    # ------------------------------------------------------------------ embedding
    def encode(
        self, input_ids: Tensor, attention_mask: Tensor, side: str = "query", **extra: Any
    ) -> Tensor:
        """Embed one side of a batch.

        Args:
            input_ids: Token ids, ``(batch, length)``.
            attention_mask: ``(batch, length)`` (``(batch, L, L)`` for GraphCodeBERT's code).
            side: ``"query"`` or ``"code"``: the layout may read the sides differently.
            **extra: The layout's other tensors (``token_type_ids``, ``position_idx``, ...).

        Returns:
            The pooled (and, if set, L2-normalised) embeddings, ``(batch, hidden)``.
        """
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, **extra}
        return self._pool(self.layout.encode(self.encoder, batch, side))

    def _pool(self, encoded: Encoded) -> Tensor:
        outputs = encoded.outputs
        hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "pooler":
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                raise ValueError(
                    "pooling='pooler' needs the encoder to return a pooler_output, got None "
                    f"from {type(self.encoder).__name__}"
                )
        else:
            token_mask = encoded.token_mask.to(hidden.dtype).unsqueeze(-1)  # (batch, length, 1)
            summed = (hidden * token_mask).sum(dim=1)  # (batch, hidden)
            pooled = summed / token_mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled

    def forward(
        self,
        query_input_ids: Tensor,
        query_attention_mask: Tensor,
        code_input_ids: Tensor,
        code_attention_mask: Tensor,
        **extra: Any,
    ) -> tuple[Tensor, Tensor]:
        """Embed both sides of a batch with the shared encoder.

        Args:
            query_input_ids: The query token ids, ``(n_queries, q_length)``.
            query_attention_mask: Their mask, ``(n_queries, q_length)``.
            code_input_ids: The code token ids, ``(n_codes, c_length)`` (with hard negatives,
                ``n_codes = n_queries * (1 + k)``).
            code_attention_mask: Their mask, ``(n_codes, c_length)`` (or ``(n_codes, L, L)``
                for GraphCodeBERT's graph-guided attention).
            **extra: Tensors named ``query_<name>`` / ``code_<name>`` are passed to ``encode``
                of that side as ``<name>``; entries that are not tensors (raw texts) are ignored.

        Returns:
            ``(query_embeddings, code_embeddings)``, ``(n_queries, hidden)`` and
            ``(n_codes, hidden)``.
        """
        side_extra: dict[str, dict[str, Any]] = {"query": {}, "code": {}}
        unknown = []
        for key, value in extra.items():
            if not isinstance(value, Tensor):
                continue
            side, _, name = key.partition("_")
            if side in side_extra and name:
                side_extra[side][name] = value
            else:
                unknown.append(key)
        if unknown:
            raise ValueError(
                f"extra tensors must be named query_<name> or code_<name>, got {sorted(unknown)!r}"
            )
        query = self.encode(query_input_ids, query_attention_mask, "query", **side_extra["query"])
        code = self.encode(code_input_ids, code_attention_mask, "code", **side_extra["code"])
        return query, code

    def similarity(self, query_embeddings: Tensor, code_embeddings: Tensor) -> Tensor:
        """Scores ``scale * q @ c.T``, ``(n_queries, n_codes)``."""
        return self.scale * query_embeddings @ code_embeddings.T

    # ------------------------------------------------------------------ texts
    def tokenize(
        self, texts: Sequence[str], side: str = "query", max_length: int = 128
    ) -> dict[str, Tensor]:
        """Tokenise texts with this model's input layout (as the training collator does).

        Returns:
            The layout's tensors for ``side``: ``input_ids``, ``attention_mask`` and any others.
        """
        return self.layout.tokenize(texts, side, max_length)

    @torch.no_grad()
    def encode_texts(
        self,
        texts: Sequence[str],
        side: str = "query",
        max_length: int = 128,
        batch_size: int = 64,
        show_progress: bool = False,
    ) -> Tensor:
        """Embed many texts in evaluation mode, batching texts of similar length together.

        Texts are sorted by length (fewer padding tokens); the result is in input order. The
        inputs go to the model's device; the model is never moved.

        Args:
            texts: The texts to embed.
            side: ``"query"`` or ``"code"``.
            max_length: Token budget per text.
            batch_size: Texts per forward pass.
            show_progress: Show a tqdm progress bar.

        Returns:
            ``(len(texts), hidden)`` float32 embeddings on the CPU.
        """
        _check_choice("side", side, SIDES)

        def encode_chunk(chunk: list[str]) -> Tensor:
            batch = self.layout.tokenize(chunk, side, max_length)
            return self.encode(side=side, **{k: v.to(self.device) for k, v in batch.items()})

        progress = f"Encoding {side} texts" if show_progress else None
        return encode_in_batches(
            self, encode_chunk, texts, batch_size, self.embedding_dim, progress
        )

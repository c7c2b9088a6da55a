"""The bi-encoder: one shared (Siamese) transformer that embeds queries and code.

Scores are ``s_ij = scale * q_i . c_j`` (the ``s`` of Eq. 3 in Li et al., EMNLP 2023). The
pooling modes follow the reference code-search scripts: ``"pooler"`` is the encoder's
``pooler_output`` (CodeBERT / GraphCodeBERT), ``"cls"`` the first token's last hidden state and
``"mean"`` the attention-masked mean of the last hidden states (UniXcoder, MiniLM).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

CONFIG_NAME = "bi_encoder.json"
POOLING_MODES = ("mean", "cls", "pooler")
INPUT_LAYOUTS = ("plain", "unixcoder", "graphcodebert")
SIDES = ("query", "code")
SETTINGS = ("pooling", "normalize", "scale", "input_layout", "language", "data_flow_length")
# ^ what bi_encoder.json holds


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


class BiEncoder(nn.Module):
    """A Siamese bi-encoder for natural-language-to-code retrieval.

    Args:
        encoder: A transformers encoder (``AutoModel``), shared by queries and code.
        tokenizer: Its tokenizer; needed by ``tokenize``, ``encode_texts`` and saving.
        pooling: ``"mean"`` (attention-masked mean), ``"cls"`` (first token) or ``"pooler"``
            (the encoder's ``pooler_output``, as the CodeBERT / GraphCodeBERT scripts).
        normalize: L2-normalise the pooled embeddings (cosine scores).
        scale: Multiplier of the dot product, ``s = scale * q @ c.T`` (UniXcoder: cosine x 20).
        input_layout: How texts become token ids, see
            ``soft_infonce.data.collator.tokenize_texts`` (``"plain"`` or ``"unixcoder"``), or
            ``"graphcodebert"``: code with its data-flow graph (``soft_infonce.graphcodebert``),
            queries plain.
        language: The code's language, for ``"graphcodebert"`` (python, java, javascript, php,
            go or ruby).
        data_flow_length: Data-flow nodes per code, for ``"graphcodebert"`` (64 in its paper).

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
        input_layout: Literal["plain", "unixcoder", "graphcodebert"] = "plain",
        language: str | None = None,
        data_flow_length: int = 64,
    ) -> None:
        super().__init__()
        _check_choice("pooling", pooling, POOLING_MODES)
        _check_choice("input_layout", input_layout, INPUT_LAYOUTS)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be a bool, got {normalize!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < 1e30:
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if pooling == "pooler" and hasattr(encoder, "pooler") and encoder.pooler is None:
            raise ValueError(
                "pooling='pooler' needs an encoder with a pooling layer, got "
                f"{type(encoder).__name__} built without one (pooler is None)"
            )
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.scale = float(scale)
        self.input_layout = input_layout
        if input_layout == "graphcodebert" and language is None:
            raise ValueError("input_layout='graphcodebert' needs language= (the code's language)")
        self.language = language
        self.data_flow_length = int(data_flow_length)
        self._featurizers: dict[int, Any] = {}

    # ------------------------------------------------------------------ configuration
    def get_config_dict(self) -> dict[str, Any]:
        """The settings saved in ``bi_encoder.json``."""
        return {name: getattr(self, name) for name in SETTINGS}

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
        """Load the encoder, its tokenizer and ``bi_encoder.json`` (when present).

        Args:
            path: A local directory; a Hub model name only with ``local_files_only=False``.
            local_files_only: Never touch the network (the default).
            **overrides: ``pooling``, ``normalize``, ``scale``, ``input_layout``; they win over
                ``bi_encoder.json``.

        Returns:
            The bi-encoder. Remote code is never trusted.
        """
        from transformers import AutoModel, AutoTokenizer

        unknown = sorted(set(overrides) - set(SETTINGS))
        if unknown:
            raise ValueError(f"overrides must be among {list(SETTINGS)}, got {unknown!r}")
        path = os.fspath(path)
        is_dir = os.path.isdir(path)
        if local_files_only and not is_dir:
            raise ValueError(
                "path must be an existing local directory when local_files_only=True "
                f"(pass local_files_only=False to load a Hub model), got {path!r}"
            )
        settings = _read_config(path, is_dir=is_dir, local_files_only=local_files_only)
        settings.update(overrides)
        load_kwargs = {"local_files_only": local_files_only, "trust_remote_code": False}
        encoder = AutoModel.from_pretrained(path, **load_kwargs)
        tokenizer = None
        if not is_dir or _has_tokenizer_files(path):
            tokenizer = AutoTokenizer.from_pretrained(path, **load_kwargs)
        else:
            logger.warning("No tokenizer files in %s: the BiEncoder has no tokenizer.", path)
        return cls(encoder, tokenizer, **settings)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the encoder (safetensors), the tokenizer and ``bi_encoder.json``."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        self.encoder.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)
        with open(os.path.join(path, CONFIG_NAME), "w", encoding="utf-8") as handle:
            json.dump(self.get_config_dict(), handle, indent=2)
            handle.write("\n")

    # ------------------------------------------------------------------ embedding
    def encode(self, input_ids: Tensor, attention_mask: Tensor, **extra: Any) -> Tensor:
        """Embed one side of a batch.

        Args:
            input_ids: Token ids, ``(batch, length)``.
            attention_mask: ``(batch, length)``; a ``(batch, length, length)`` mask is also
                accepted, its diagonal then marks the tokens averaged by mean pooling.
            **extra: Passed to the encoder (``token_type_ids``, ``position_ids``, ...).

        Returns:
            The pooled (and, if set, L2-normalised) embeddings, ``(batch, hidden)``.
        """
        position_idx = extra.pop("position_idx", None)
        if position_idx is not None:  # GraphCodeBERT: code tokens + data-flow nodes
            from .graphcodebert import graphcodebert_encode

            outputs = graphcodebert_encode(self.encoder, input_ids, position_idx, attention_mask,
                                           return_outputs=True)
            return self._pool(outputs, (position_idx >= 2).long())  # code tokens only
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return self._pool(outputs, attention_mask)

    def _pool(self, outputs: Any, attention_mask: Tensor) -> Tensor:
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
            token_mask = attention_mask
            if token_mask.dim() == 3:  # (batch, length, length): a token attends to itself
                token_mask = token_mask.diagonal(dim1=1, dim2=2)
            token_mask = token_mask.to(hidden.dtype).unsqueeze(-1)  # (batch, length, 1)
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
            query_input_ids: The query token ids, ``(batch, q_length)``.
            query_attention_mask: Their mask, ``(batch, q_length)``.
            code_input_ids: The code token ids, ``(batch, c_length)``.
            code_attention_mask: Their mask, ``(batch, c_length)`` (or ``(batch, L, L)`` for
                GraphCodeBERT's graph-guided attention).
            **extra: Tensors named ``query_<name>`` / ``code_<name>`` are passed to ``encode``
                of that side as ``<name>``; entries that are not tensors (raw texts) are ignored.

        Returns:
            ``(query_embeddings, code_embeddings)``, each ``(batch, hidden)``.
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
        query = self.encode(query_input_ids, query_attention_mask, **side_extra["query"])
        code = self.encode(code_input_ids, code_attention_mask, **side_extra["code"])
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
            ``{"input_ids", "attention_mask"}`` from
            ``soft_infonce.data.collator.tokenize_texts``.
        """
        from soft_infonce.data.collator import tokenize_texts

        _check_choice("side", side, SIDES)
        if self.tokenizer is None:
            raise ValueError("tokenize needs a tokenizer, got a BiEncoder built with None")
        featurizer = self.code_featurizer(max_length) if side == "code" else None
        if featurizer is not None:
            features = featurizer(list(texts))
            return {key.removeprefix("code_"): value for key, value in features.items()}
        layout = "plain" if self.input_layout == "graphcodebert" else self.input_layout
        return tokenize_texts(self.tokenizer, texts, max_length, input_layout=layout)

    def code_featurizer(self, max_length: int) -> Any:
        """The GraphCodeBERT featurizer of the code side (``None`` for other layouts).

        Args:
            max_length: Code tokens per text (data-flow nodes come on top).

        Returns:
            A ``GraphCodeBERTFeaturizer`` (one per length, reused), or ``None``.
        """
        if self.input_layout != "graphcodebert":
            return None
        if max_length not in self._featurizers:
            from .graphcodebert import GraphCodeBERTFeaturizer

            self._featurizers[max_length] = GraphCodeBERTFeaturizer(
                self.tokenizer, self.language, code_length=max_length,
                data_flow_length=self.data_flow_length)
        return self._featurizers[max_length]

    @torch.no_grad()
    def encode_texts(
        self,
        texts: Sequence[str],
        side: str = "query",
        max_length: int = 128,
        batch_size: int = 64,
        show_progress: bool = False,
        device: str | torch.device | None = None,
    ) -> Tensor:
        """Embed many texts in evaluation mode, batching texts of similar length together.

        Texts are sorted by length (fewer padding tokens); the result is in input order.

        Args:
            texts: The texts to embed.
            side: ``"query"`` or ``"code"``.
            max_length: Token budget per text.
            batch_size: Texts per forward pass.
            show_progress: Show a tqdm progress bar.
            device: Where to run; defaults to the model's device. The model is moved there
                for the call and moved back afterwards.

        Returns:
            ``(len(texts), hidden)`` float32 embeddings on the CPU.
        """
        _check_choice("side", side, SIDES)
        if isinstance(texts, str):
            raise ValueError(f"texts must be a sequence of strings, got the string {texts!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        texts = list(texts)
        if not texts:
            return torch.empty(0, self.embedding_dim)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        starts = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"Encoding {side} texts", unit="batch")
        original_device = self.device
        target = original_device if device is None else torch.device(device)
        was_training = self.training
        self.eval()
        self.to(target)
        try:
            chunks = []
            for start in starts:
                batch = self.tokenize(
                    [texts[i] for i in order[start : start + batch_size]],
                    side=side,
                    max_length=max_length,
                )
                if batch["attention_mask"].dim() == 2:
                    batch["input_ids"], batch["attention_mask"] = _trim_right_padding(
                        batch["input_ids"], batch["attention_mask"]
                    )
                embeddings = self.encode(**{k: v.to(target) for k, v in batch.items()})
                chunks.append(embeddings.float().cpu())
        finally:
            self.to(original_device)
            self.train(was_training)
        result = torch.empty(len(texts), chunks[0].shape[1])
        result[torch.tensor(order)] = torch.cat(chunks)
        return result


def _trim_right_padding(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop trailing columns no row attends to (right padding); positions are unchanged."""
    if attention_mask.dim() != 2 or attention_mask.shape[1] == 0:
        return input_ids, attention_mask
    used = attention_mask.bool().any(dim=0).nonzero()
    length = int(used[-1]) + 1 if len(used) else attention_mask.shape[1]
    return input_ids[:, :length], attention_mask[:, :length]


def _has_tokenizer_files(path: str) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
    return any(os.path.isfile(os.path.join(path, name)) for name in names)


def _read_config(path: str, *, is_dir: bool, local_files_only: bool) -> dict[str, Any]:
    """``bi_encoder.json`` as a dict, or ``{}`` when the model has none."""
    if is_dir:
        file = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(file):
            return {}
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            file = hf_hub_download(path, CONFIG_NAME, local_files_only=local_files_only)
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return {}
    with open(file, encoding="utf-8") as handle:
        settings = json.load(handle)
    if not isinstance(settings, dict):
        raise ValueError(f"{CONFIG_NAME} must hold a JSON object, got {settings!r}")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        logger.warning("Ignoring unknown keys %s in %s.", unknown, file)
    return {key: value for key, value in settings.items() if key not in unknown}

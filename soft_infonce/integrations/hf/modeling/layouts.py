"""Input layouts: how one side's texts become tensors, and how the encoder reads those tensors.

A layout is the only place that knows a model family's input format. The model
(:class:`~soft_infonce.integrations.hf.modeling.BiEncoder`) and the collator
(:class:`~soft_infonce.integrations.hf.collator.BiEncoderCollator`) both call it:

* ``layout.tokenize(texts, side, max_length)`` -> the tensors of one side (no side prefix);
* ``layout.encode(encoder, batch, side)`` -> :class:`Encoded` (the encoder's outputs and the
  mask of the tokens that mean pooling averages).

Layouts: :class:`PlainLayout` (the tokenizer's own special tokens) and :class:`UniXcoderLayout`
(``[cls] <encoder-only> [sep] tokens [sep]``). Other layouts register a factory under their name
with :func:`register_layout`; the GraphCodeBERT application
(:mod:`soft_infonce.codesearch.graphcodebert`, which needs tree-sitter) registers
``"graphcodebert"`` when it is imported, so this layer never imports it. This module imports
torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import torch
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "LAYOUT_NAMES",
    "Encoded",
    "InputLayout",
    "PlainLayout",
    "UniXcoderLayout",
    "make_layout",
    "tokenize_texts",
]

LAYOUT_NAMES = ("plain", "unixcoder", "graphcodebert")
SIDES = ("query", "code")
ENCODER_ONLY = "<encoder-only>"
_TOKEN_LAYOUTS = ("plain", "unixcoder")
_UNIXCODER_SPECIALS = 4  # [cls, <encoder-only>, sep] + tokens + [sep]


@dataclass
class Encoded:
    """What a layout's ``encode`` returns.

    Attributes:
        outputs: The encoder's output (``last_hidden_state``; ``pooler_output`` when it has one).
        token_mask: ``(batch, length)``, 1 on the tokens that mean pooling averages.
    """

    outputs: Any
    token_mask: Tensor


def _check_length(max_length: Any, minimum: int, layout: str) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < minimum:
        raise ValueError(
            f"max_length must be an int >= {minimum} for input_layout={layout!r}, "
            f"got {max_length!r}"
        )


def _unixcoder_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> dict[str, Tensor]:
    mode_id = tokenizer.convert_tokens_to_ids(ENCODER_ONLY)
    if mode_id is None or mode_id == tokenizer.unk_token_id:
        raise ValueError(
            f"input_layout='unixcoder' needs the token {ENCODER_ONLY!r} in the tokenizer's "
            f"vocabulary (UniXcoder's has it), got the unknown-token id {mode_id!r}"
        )
    head = [tokenizer.cls_token_id, mode_id, tokenizer.sep_token_id]
    tail = [tokenizer.sep_token_id]
    if None in head or tokenizer.pad_token_id is None:
        raise ValueError(
            "input_layout='unixcoder' needs cls, sep and pad tokens, got "
            f"cls={tokenizer.cls_token_id!r}, sep={tokenizer.sep_token_id!r}, "
            f"pad={tokenizer.pad_token_id!r}"
        )
    rows = []
    for text in texts:
        tokens = tokenizer.tokenize(text)[: max_length - _UNIXCODER_SPECIALS]
        rows.append(head + cast(list[int], tokenizer.convert_tokens_to_ids(tokens)) + tail)
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    input_layout: Literal["plain", "unixcoder"] = "plain",
) -> dict[str, Tensor]:
    """Tokenises a batch of texts into padded ``input_ids`` and ``attention_mask``.

    Args:
        tokenizer: A Hugging Face tokenizer.
        texts: The texts (at least one).
        max_length: Most tokens per text, special tokens included.
        input_layout: ``"plain"``: the tokenizer's own special tokens, truncated to
            ``max_length`` and padded to the longest text. ``"unixcoder"``: UniXcoder's
            code-search layout ``[cls] <encoder-only> [sep] tokens [sep]`` with at most
            ``max_length - 4`` text tokens, padded with the pad id to the longest row.

    Returns:
        ``{"input_ids", "attention_mask"}``: LongTensors of shape (batch, longest row); the
        mask is 1 on real tokens and 0 on padding.

    Examples:
        >>> batch = tokenize_texts(tokenizer, ["sort a list"], 32)  # doctest: +SKIP
        >>> batch["input_ids"].shape  # doctest: +SKIP
        torch.Size([1, 5])
    """
    if input_layout not in _TOKEN_LAYOUTS:
        raise ValueError(f"input_layout must be one of {_TOKEN_LAYOUTS}, got {input_layout!r}")
    if isinstance(texts, str) or not texts:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r:.80}")
    _check_length(max_length, _UNIXCODER_SPECIALS if input_layout == "unixcoder" else 1,
                  input_layout)  # fmt: skip
    if input_layout == "unixcoder":
        return _unixcoder_ids(tokenizer, texts, max_length)
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return {
        "input_ids": encoded["input_ids"].long(),
        "attention_mask": encoded["attention_mask"].long(),
    }


class InputLayout:
    """Base class of the input layouts: checks the arguments, then calls ``_tokenize``.

    Subclasses set ``name``, implement ``_tokenize`` and override ``encode`` when the encoder
    is not called as ``encoder(**batch)``.

    Args:
        tokenizer: The model's tokenizer; needed by ``tokenize`` (it may be set later).
    """

    name: ClassVar[str]
    #: The smallest ``max_length`` the layout accepts (its special tokens per text).
    min_length: ClassVar[int] = 1
    #: Whether ``sentence-transformers`` can reproduce both sides of the layout (a prompt may
    #: supply a fixed prefix; a data-flow graph cannot be supplied).
    sentence_transformers_exact: ClassVar[bool] = True

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        self.tokenizer: Any = tokenizer

    def __repr__(self) -> str:
        settings = {k: v for k, v in self.get_config_dict().items() if k != "input_layout"}
        shown = ", ".join(f"{k}={v!r}" for k, v in settings.items() if v is not None)
        return f"{type(self).__name__}({shown})"

    def tokenize(self, texts: Sequence[str], side: str, max_length: int) -> dict[str, Tensor]:
        """The tensors of one side of a batch.

        Args:
            texts: The texts (at least one).
            side: ``"query"`` or ``"code"``.
            max_length: Most tokens per text, special tokens included.

        Returns:
            Tensors without a side prefix, ``input_ids`` and ``attention_mask`` at least.
        """
        if side not in SIDES:
            raise ValueError(f"side must be one of {list(SIDES)}, got {side!r}")
        if self.tokenizer is None:
            raise ValueError(
                f"tokenize needs a tokenizer, got a {type(self).__name__} (or BiEncoder) built "
                "with None"
            )
        if isinstance(texts, str) or not texts:
            raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r:.80}")
        _check_length(max_length, self.min_length, self.name)
        return self._tokenize(list(texts), side, max_length)

    def _tokenize(self, texts: list[str], side: str, max_length: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def encode(self, encoder: Any, batch: Mapping[str, Tensor], side: str = "query") -> Encoded:
        """Run the encoder on one side's tensors: ``encoder(**batch)`` here.

        Args:
            encoder: A transformers encoder.
            batch: The tensors of ``tokenize`` (on the encoder's device).
            side: ``"query"`` or ``"code"``.

        Returns:
            The outputs and the mask of the tokens that mean pooling averages.
        """
        return Encoded(encoder(**batch), batch["attention_mask"])

    def get_config_dict(self) -> dict[str, Any]:
        """The settings ``bi_encoder.json`` holds (every file keeps all three keys)."""
        return {"input_layout": self.name, "language": None, "data_flow_length": 64}

    def sentence_transformers_prompt(self) -> str:
        """The text that ``sentence-transformers`` must put before each text ("" for none)."""
        return ""


class PlainLayout(InputLayout):
    """The tokenizer's own special tokens (``[CLS] text [SEP]``, ``<s> text </s>``)."""

    name = "plain"

    def _tokenize(self, texts: list[str], side: str, max_length: int) -> dict[str, Tensor]:
        return tokenize_texts(self.tokenizer, texts, max_length, input_layout="plain")


class UniXcoderLayout(InputLayout):
    """UniXcoder's code-search layout, both sides: ``[cls] <encoder-only> [sep] tokens [sep]``.

    For ``sentence-transformers`` the fixed head is the prompt ``<encoder-only>`` + sep token
    (the tokenizer saved with the model marks ``<encoder-only>`` as a special token).
    """

    name = "unixcoder"
    min_length = _UNIXCODER_SPECIALS

    def _tokenize(self, texts: list[str], side: str, max_length: int) -> dict[str, Tensor]:
        return tokenize_texts(self.tokenizer, texts, max_length, input_layout="unixcoder")

    def sentence_transformers_prompt(self) -> str:
        return ENCODER_ONLY + str(getattr(self.tokenizer, "sep_token", None) or "</s>")


#: ``factory(tokenizer, language=, data_flow_length=) -> InputLayout`` for a layout name.
LayoutFactory = Callable[..., "InputLayout"]

_LAYOUTS: dict[str, LayoutFactory] = {
    "plain": lambda tokenizer, **_: PlainLayout(tokenizer),
    "unixcoder": lambda tokenizer, **_: UniXcoderLayout(tokenizer),
}
#: Names whose factory an application registers on import: name -> (module, pip extra).
_REGISTERED_BY = {"graphcodebert": ("soft_infonce.codesearch.graphcodebert", "graphcodebert")}


def register_layout(name: str, factory: LayoutFactory) -> None:
    """Make ``make_layout(name, ...)`` (and ``BiEncoder(input_layout=name)``) build a layout.

    Args:
        name: One of ``LAYOUT_NAMES`` (the names a saved model's config may hold).
        factory: Called as ``factory(tokenizer, language=..., data_flow_length=...)``.
    """
    if name not in LAYOUT_NAMES:
        raise ValueError(f"name must be one of {list(LAYOUT_NAMES)}, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory must be callable, got {factory!r}")
    _LAYOUTS[name] = factory


def make_layout(
    input_layout: str | InputLayout,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    language: str | None = None,
    data_flow_length: int | None = None,
) -> InputLayout:
    """A layout object from its name (or the object itself).

    Args:
        input_layout: ``"plain"``, ``"unixcoder"``, ``"graphcodebert"`` or an
            :class:`InputLayout`.
        tokenizer: Given to a layout built from its name; set on a layout object that has none.
        language: For ``"graphcodebert"`` (ignored by the other names).
        data_flow_length: For ``"graphcodebert"`` (64 when ``None``).

    Returns:
        The layout. A layout object must not be combined with ``language``/``data_flow_length``
        (they belong to the object), nor with a different tokenizer than its own.
    """
    if isinstance(input_layout, InputLayout):
        if language is not None or data_flow_length is not None:
            raise ValueError(
                "language and data_flow_length must be set on the layout object, got "
                f"language={language!r}, data_flow_length={data_flow_length!r} with "
                f"{input_layout!r}"
            )
        if tokenizer is not None:
            if input_layout.tokenizer is None:
                input_layout.tokenizer = tokenizer
            elif input_layout.tokenizer is not tokenizer:
                raise ValueError(
                    f"tokenizer must be the layout's own tokenizer or None, got another one "
                    f"than {type(input_layout).__name__}.tokenizer"
                )
        return input_layout
    if input_layout not in LAYOUT_NAMES:
        raise ValueError(
            f"input_layout must be one of {list(LAYOUT_NAMES)} or an InputLayout, "
            f"got {input_layout!r}"
        )
    if input_layout not in _LAYOUTS:
        module, extra = _REGISTERED_BY[input_layout]
        raise ValueError(
            f"input_layout={input_layout!r} is registered by {module}: import it first "
            f'(it needs pip install "soft-infonce[{extra}]")'
        )
    return _LAYOUTS[input_layout](tokenizer, language=language, data_flow_length=data_flow_length)

"""GraphCodeBERT's input layout: plain queries; code as tokens plus its data-flow graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from soft_infonce.codesearch.graphcodebert.features import (
    TOKEN_POSITION_START,
    GraphCodeBERTFeaturizer,
)
from soft_infonce.codesearch.graphcodebert.model import graphcodebert_encode
from soft_infonce.integrations.hf.modeling.layouts import (
    Encoded,
    InputLayout,
    register_layout,
    tokenize_texts,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class GraphCodeBERTLayout(InputLayout):
    """GraphCodeBERT: queries plain; code as its tokens plus its data-flow graph.

    The code side is built by
    :class:`~soft_infonce.codesearch.graphcodebert.GraphCodeBERTFeaturizer`
    (``input_ids``, ``position_idx`` and a ``(batch, L, L)`` graph-guided ``attention_mask``;
    ``L = max_length + data_flow_length``) and encoded by
    :func:`~soft_infonce.codesearch.graphcodebert.graphcodebert_encode`; mean pooling averages the
    code
    tokens only. ``sentence-transformers`` cannot build the graph: a saved model's query
    embeddings match there, its code embeddings do not.

    Args:
        tokenizer: The model's (RoBERTa) tokenizer.
        language: The code's language (python, java, javascript, php, go or ruby).
        data_flow_length: Data-flow nodes per code (64 in the paper).
    """

    name = "graphcodebert"
    sentence_transformers_exact = False

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None = None,
        language: str | None = None,
        data_flow_length: int = 64,
    ) -> None:
        super().__init__(tokenizer)
        if not isinstance(language, str):
            raise ValueError(
                f"input_layout='graphcodebert' needs language= (the code's language), "
                f"got {language!r}"
            )
        if isinstance(data_flow_length, bool) or not isinstance(data_flow_length, int) \
                or data_flow_length < 0:  # fmt: skip
            raise ValueError(f"data_flow_length must be an int >= 0, got {data_flow_length!r}")
        self.language = language
        self.data_flow_length = data_flow_length
        self._featurizers: dict[int, Any] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "tokenizer":  # featurizers hold the tokenizer they were built with
            self.__dict__["_featurizers"] = {}
        super().__setattr__(name, value)

    def featurizer(self, max_length: int) -> Any:
        """The code featurizer for ``max_length`` code tokens (built once per length)."""
        if max_length not in self._featurizers:
            self._featurizers[max_length] = GraphCodeBERTFeaturizer(
                self.tokenizer, self.language, code_length=max_length,
                data_flow_length=self.data_flow_length,
            )  # fmt: skip
        return self._featurizers[max_length]

    def _tokenize(self, texts: list[str], side: str, max_length: int) -> dict[str, Tensor]:
        if side == "query":
            return tokenize_texts(self.tokenizer, texts, max_length, input_layout="plain")
        features = self.featurizer(max_length)(texts)
        return {key.removeprefix("code_"): value for key, value in features.items()}

    def encode(self, encoder: Any, batch: Mapping[str, Tensor], side: str = "query") -> Encoded:
        if side == "query":
            return super().encode(encoder, batch, side)
        missing = sorted({"input_ids", "position_idx", "attention_mask"} - set(batch))
        if missing:
            raise ValueError(
                f"the code side of input_layout='graphcodebert' needs {missing} "
                f"(from layout.tokenize), got keys {sorted(batch)}"
            )
        position_idx = batch["position_idx"]
        outputs = graphcodebert_encode(
            encoder, batch["input_ids"], position_idx, batch["attention_mask"],
            return_outputs=True,
        )  # fmt: skip
        return Encoded(outputs, position_idx.ge(TOKEN_POSITION_START).long())  # code tokens

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "input_layout": self.name,
            "language": self.language,
            "data_flow_length": self.data_flow_length,
        }


def _make_graphcodebert_layout(
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    language: str | None = None,
    data_flow_length: int | None = None,
) -> GraphCodeBERTLayout:
    flow = 64 if data_flow_length is None else data_flow_length
    return GraphCodeBERTLayout(tokenizer, language=language, data_flow_length=flow)


register_layout("graphcodebert", _make_graphcodebert_layout)

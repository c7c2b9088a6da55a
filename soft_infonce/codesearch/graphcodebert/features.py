"""GraphCodeBERT code-side inputs: code tokens, data-flow nodes and the graph-guided mask.

The layout follows GraphCodeBERT's code-search fine-tuning (Guo et al., ICLR 2021, Sec. 3.2-3.3):
``[CLS] code subwords [SEP] node_1 ... node_k [PAD] ...`` with ``L = code_length +
data_flow_length`` positions. Position ids are ``2, 3, ...`` for the code (RoBERTa counts from
``padding_idx + 1``), ``0`` for the nodes and ``1`` (the padding index) for padding; node ids are
the unknown token (their embeddings are replaced by averages in :func:`graphcodebert_encode`).

The attention mask (``True`` = may attend) lets code tokens attend each other; ``[CLS]`` and
``[SEP]`` attend every non-padding position; a node and the code subwords of its variable attend
each other; a node attends the nodes its value comes from (Eq. 5-6 of the paper).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from soft_infonce.codesearch.graphcodebert.dfg import DataflowEdge, extract_dataflow
from soft_infonce.codesearch.graphcodebert.parsing import UnsupportedCode, get_grammar, get_parser

logger = logging.getLogger(__name__)

TOKEN_POSITION_START = 2  # position id of [CLS]; RoBERTa's padding_idx is 1
NODE_POSITION = 0
PAD_POSITION = 1
SPECIALS = ("cls", "sep", "pad", "unk")


class GraphCodeBERTFeaturizer:
    """Turn raw functions into GraphCodeBERT inputs (``code_*`` tensors for the collator).

    Args:
        tokenizer: A Hugging Face tokenizer with ``cls``/``sep``/``pad``/``unk`` tokens (the
            GraphCodeBERT tokenizer is RoBERTa's byte-level BPE).
        language: ``python``, ``java``, ``javascript``, ``php``, ``go`` or ``ruby``.
        code_length: Budget of code subwords (with ``[CLS]`` and ``[SEP]``); 256 in the paper.
        data_flow_length: Budget of data-flow nodes; 64 in the paper. Short code leaves its
            unused code budget to nodes, as in the reference layout.
        pad_to_max_length: Pad every row to ``code_length + data_flow_length`` (the published
            layout). ``False`` cuts the padding all rows of a batch share; the model's outputs at
            the kept positions are unchanged. It saves compute only when every row of a batch is
            short (random batches of 32 CodeSearchNet-Ruby functions still kept ~300 of 320).

    Attributes:
        fallback_count: Codes the parser could not handle; they got tokens-only rows (the raw
            code tokenized as text, no nodes).
        total_count: Codes featurized so far.

    Example::

        from transformers import AutoTokenizer
        from soft_infonce.codesearch.graphcodebert import GraphCodeBERTFeaturizer

        tokenizer = AutoTokenizer.from_pretrained("microsoft/graphcodebert-base")
        featurizer = GraphCodeBERTFeaturizer(tokenizer, "python")
        batch = featurizer(["def f(a):\\n    return a + 1"])
        batch["code_attention_mask"].shape  # torch.Size([1, 320, 320])
    """

    warn_every: int = 100  # log the fallback warning on the 1st, then every warn_every-th

    def __init__(
        self,
        tokenizer: Any,
        language: str,
        code_length: int = 256,
        data_flow_length: int = 64,
        *,
        pad_to_max_length: bool = True,
    ) -> None:
        get_grammar(language)
        if not isinstance(code_length, int) or code_length < 3:
            raise ValueError(f"code_length must be an int >= 3, got {code_length!r}")
        if not isinstance(data_flow_length, int) or data_flow_length < 0:
            raise ValueError(f"data_flow_length must be an int >= 0, got {data_flow_length!r}")
        special = {name: getattr(tokenizer, f"{name}_token_id", None) for name in SPECIALS}
        missing = [name for name, value in special.items() if value is None]
        if missing:
            raise ValueError(f"tokenizer must define {SPECIALS} token ids, got none for {missing}")
        get_parser(language)  # fail now, not in a data-loader worker, if the wheels are missing
        self.tokenizer = tokenizer
        self.language = language
        self.code_length = code_length
        self.data_flow_length = data_flow_length
        self.pad_to_max_length = pad_to_max_length
        self.special = {name: int(value) for name, value in special.items() if value is not None}
        # Subwords of "@" that prefix each token: "@ x" gives x its leading-space form (Ġx).
        self._backend = _plain_backend(tokenizer)
        self._prefix = len(self._encode(["@"])[0])
        self.fallback_count = 0
        self.total_count = 0

    @property
    def max_length(self) -> int:
        """``code_length + data_flow_length``: the row length of the published layout."""
        return self.code_length + self.data_flow_length

    def __call__(self, codes: Sequence[str]) -> dict[str, Tensor]:
        """Featurize a batch of functions.

        Args:
            codes: Source texts, one function each.

        Returns:
            ``code_input_ids`` and ``code_position_idx`` ``(batch, L)`` (long) and
            ``code_attention_mask`` ``(batch, L, L)`` (bool).
        """
        if isinstance(codes, str) or not isinstance(codes, Sequence) or not codes:
            raise ValueError(f"codes must be a non-empty sequence of strings, got {codes!r:.80}")
        rows = [self._row(code) for code in codes]
        length = self.max_length
        if not self.pad_to_max_length:
            length = max(len(ids) for ids, _, _, _ in rows)
        ids = torch.full((len(rows), length), self.special["pad"], dtype=torch.long)
        positions = torch.full((len(rows), length), PAD_POSITION, dtype=torch.long)
        mask = torch.zeros((len(rows), length, length), dtype=torch.bool)
        graph: list[tuple[int, int, int]] = []  # (row in batch, query, key) of node entries
        for b, (row_ids, n_code, spans, links) in enumerate(rows):
            n_all = len(row_ids)
            ids[b, :n_all] = torch.tensor(row_ids, dtype=torch.long)
            positions[b, :n_code] = torch.arange(n_code) + TOKEN_POSITION_START
            positions[b, n_code:n_all] = NODE_POSITION
            mask[b, :n_code, :n_code] = True
            mask[b, [0, n_code - 1], :n_all] = True  # [CLS] and [SEP] see everything
            for node, ((start, end), sources) in enumerate(zip(spans, links)):
                query = n_code + node
                for token in range(start, end):  # a node and its variable's subwords
                    graph += [(b, query, token), (b, token, query)]
                graph.extend((b, query, n_code + source) for source in sources)
        if graph:
            mask[tuple(torch.tensor(graph, dtype=torch.long).T)] = True
        return {"code_input_ids": ids, "code_position_idx": positions, "code_attention_mask": mask}

    def _row(self, code: str) -> tuple[list[int], int, list[tuple[int, int]], list[list[int]]]:
        """One row: ids (code then nodes), code length, node spans and node-to-node links."""
        self.total_count += 1
        try:
            tokens, edges = extract_dataflow(code, self.language)
        except UnsupportedCode as error:
            self._fallback(error)
            tokens, edges = None, []
        if tokens is None:
            pieces = self._encode([code])
        else:
            pieces = self._subwords(tokens)
        bounds, total = [], 0  # code token -> [start, end) among the subwords
        for piece in pieces:
            bounds.append((total, total + len(piece)))
            total += len(piece)
        budget = self.max_length - 2 - min(len(edges), self.data_flow_length)
        code_ids = [subword for piece in pieces for subword in piece][:budget]
        n_code = len(code_ids) + 2
        kept = _nodes_in_code(edges, bounds, len(code_ids))[: self.max_length - n_code]
        order = {edge.token_index: node for node, edge in enumerate(kept)}
        spans = [(bounds[e.token_index][0] + 1, bounds[e.token_index][1] + 1) for e in kept]
        links = [[order[s] for s in e.source_indices if s in order] for e in kept]
        row_ids = [self.special["cls"], *code_ids, self.special["sep"]]
        row_ids += [self.special["unk"]] * len(kept)
        return row_ids, n_code, spans, links

    def _subwords(self, tokens: list[str]) -> list[list[int]]:
        """Subword ids per code token; tokens after the first get their leading-space form."""
        pieces = self._encode([tokens[0]] + [f"@ {token}" for token in tokens[1:]])
        return [pieces[0]] + [ids[self._prefix :] for ids in pieces[1:]]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text without special tokens, padding or truncation."""
        if self._backend is not None:
            return [
                encoding.ids
                for encoding in self._backend.encode_batch(texts, add_special_tokens=False)
            ]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _fallback(self, error: Exception) -> None:
        self.fallback_count += 1
        if self.fallback_count == 1 or self.fallback_count % self.warn_every == 0:
            logger.warning(
                "GraphCodeBERT data flow: %d of %d %s codes so far fell back to tokens-only "
                "inputs (latest: %s)",
                self.fallback_count,
                self.total_count,
                self.language,
                error,
            )


def _plain_backend(tokenizer: Any) -> Any | None:
    """A copy of a fast tokenizer's backend without its saved padding and truncation.

    Calling the backend directly is ~7x faster than the Python wrapper on the many short texts
    (one per code token) of a function; the copy gives the wrapper's ids.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        return None
    plain = type(backend).from_str(backend.to_str())
    plain.no_padding()
    plain.no_truncation()
    return plain


def _nodes_in_code(
    edges: list[DataflowEdge], bounds: list[tuple[int, int]], n_subwords: int
) -> list[DataflowEdge]:
    """The nodes whose variable still has subwords after truncation (others would be empty)."""
    return [
        edge
        for edge in edges
        if bounds[edge.token_index][1] <= n_subwords
        and bounds[edge.token_index][1] > bounds[edge.token_index][0]
    ]

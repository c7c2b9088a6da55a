"""Run a RoBERTa-style encoder on GraphCodeBERT inputs (code tokens + data-flow nodes)."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor

from soft_infonce.codesearch.graphcodebert.features import NODE_POSITION, TOKEN_POSITION_START

SUPPORTED_ATTENTION = ("eager", "sdpa")  # take an arbitrary additive (batch, 1, L, L) mask


def graphcodebert_encode(
    encoder: Any,
    input_ids: Tensor,
    position_idx: Tensor,
    attention_mask: Tensor,
    *,
    return_outputs: bool = False,
) -> Tensor | Any:
    """Encode GraphCodeBERT inputs with graph-guided attention (Guo et al., ICLR 2021, Eq. 5-6).

    A data-flow node's input embedding is the average of the word embeddings of the code
    subwords it attends (its variable's subwords); code tokens keep their word embeddings. The
    encoder then runs on these embeddings with ``position_idx`` as position ids and the 2-D
    ``attention_mask`` turned into an additive ``(batch, 1, L, L)`` bias.

    Args:
        encoder: A Hugging Face encoder with learned absolute positions (``RobertaModel``, e.g.
            ``microsoft/graphcodebert-base``), using the eager or SDPA attention.
        input_ids: ``(batch, L)`` ids from :class:`GraphCodeBERTFeaturizer`.
        position_idx: ``(batch, L)``: ``>= 2`` code tokens, ``0`` nodes, ``1`` padding.
        attention_mask: ``(batch, L, L)``, nonzero where a row may attend a column.
        return_outputs: Return the encoder's whole output (e.g. for ``pooler_output``).

    Returns:
        The last hidden states ``(batch, L, hidden)`` (or the output object).

    Example::

        from transformers import AutoModel, AutoTokenizer
        from soft_infonce.codesearch.graphcodebert import (
            GraphCodeBERTFeaturizer,
            graphcodebert_encode,
        )

        tokenizer = AutoTokenizer.from_pretrained("microsoft/graphcodebert-base")
        model = AutoModel.from_pretrained("microsoft/graphcodebert-base")
        batch = GraphCodeBERTFeaturizer(tokenizer, "go")(["func f(a int) int { return a }"])
        hidden = graphcodebert_encode(
            model, batch["code_input_ids"], batch["code_position_idx"], batch["code_attention_mask"]
        )  # (1, 320, 768); GraphCodeBERT's code search pools hidden[:, 0] through the pooler
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    batch, length = input_ids.shape
    if tuple(position_idx.shape) != (batch, length):
        raise ValueError(
            f"position_idx must have input_ids' shape {(batch, length)}, "
            f"got {tuple(position_idx.shape)}"
        )
    if tuple(attention_mask.shape) != (batch, length, length):
        raise ValueError(
            f"attention_mask must be (batch, length, length) = {(batch, length, length)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    implementation = getattr(getattr(encoder, "config", None), "_attn_implementation", None)
    if implementation is not None and implementation not in SUPPORTED_ATTENTION:
        raise ValueError(
            f"encoder attention must be one of {SUPPORTED_ATTENTION} to take a graph-guided "
            f"mask, got {implementation!r} (load it with attn_implementation='sdpa')"
        )
    allowed = attention_mask.bool()
    words = encoder.get_input_embeddings()(input_ids)  # (batch, L, hidden)
    nodes = position_idx.eq(NODE_POSITION)
    tokens = position_idx.ge(TOKEN_POSITION_START)
    # (batch, L, L): node row -> the code tokens it attends, normalised to an average.
    node_to_token = (nodes[:, :, None] & tokens[:, None, :] & allowed).to(words.dtype)
    node_to_token = node_to_token / node_to_token.sum(-1, keepdim=True).clamp(min=1.0)
    averaged = torch.bmm(node_to_token, words)
    embeddings = torch.where(nodes[:, :, None], averaged, words)
    if _takes_prepared_masks(encoder):  # transformers 5: a 4-D mask is used as it is
        mask = torch.zeros(allowed.shape, dtype=words.dtype, device=words.device)
        mask = mask.masked_fill(~allowed, torch.finfo(words.dtype).min)[:, None]  # (batch, 1, L, L)
    else:  # transformers 4: get_extended_attention_mask turns a 3-D 0/1 mask into the bias
        mask = allowed.to(words.dtype)
    outputs = encoder(inputs_embeds=embeddings, attention_mask=mask, position_ids=position_idx)
    return outputs if return_outputs else outputs[0]


def _takes_prepared_masks(encoder: Any) -> bool:
    """Whether the encoder builds masks with ``masking_utils`` (which passes 4-D masks through).

    Encoders of transformers 5 do; those of transformers 4 call ``get_extended_attention_mask``,
    which wants a 3-D ``(batch, L, L)`` mask and rejects a 4-D one.
    """
    module = sys.modules.get(type(encoder).__module__)
    return module is None or hasattr(module, "create_bidirectional_mask")

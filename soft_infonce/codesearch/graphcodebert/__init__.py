"""GraphCodeBERT inputs: data-flow graphs from tree-sitter and graph-guided attention.

GraphCodeBERT (Guo et al., ICLR 2021) reads a function as its code tokens followed by the
variables of its data-flow graph, with an attention mask that follows the graph. This package
builds those inputs for Python, Java, JavaScript, PHP, Go and Ruby from the tree-sitter grammar
wheels on PyPI (``pip install 'soft-infonce[graphcodebert]'``; nothing is compiled) and runs a
RoBERTa encoder on them:

* :func:`extract_dataflow`: code -> tokens and :class:`DataflowEdge` nodes;
* :class:`GraphCodeBERTFeaturizer`: a batch of code -> ``code_input_ids``,
  ``code_position_idx``, ``code_attention_mask``;
* :func:`graphcodebert_encode`: encoder + those tensors -> last hidden states.

:class:`GraphCodeBERTLayout` (``layout.py``) puts the two together for the model and the
collator; importing this package registers it as ``input_layout="graphcodebert"``
(``BiEncoder(..., input_layout="graphcodebert", language=...)``).
"""

from __future__ import annotations

from soft_infonce.codesearch.graphcodebert.dfg import DataflowEdge, extract_dataflow
from soft_infonce.codesearch.graphcodebert.features import GraphCodeBERTFeaturizer
from soft_infonce.codesearch.graphcodebert.grammars import SUPPORTED_LANGUAGES
from soft_infonce.codesearch.graphcodebert.layout import GraphCodeBERTLayout  # registers it
from soft_infonce.codesearch.graphcodebert.model import graphcodebert_encode
from soft_infonce.codesearch.graphcodebert.parsing import UnsupportedCode

__all__ = [
    "SUPPORTED_LANGUAGES",
    "DataflowEdge",
    "GraphCodeBERTLayout",
    "GraphCodeBERTFeaturizer",
    "UnsupportedCode",
    "extract_dataflow",
    "graphcodebert_encode",
]

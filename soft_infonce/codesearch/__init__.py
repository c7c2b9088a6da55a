"""Code search, the application built on the library: data, mining, index, training command.

* ``data/``: loaders (CodeSearchNet, CoSQA, JSON lines), pair mining, hard-negative mining;
* ``search/``: the code-search index over a code base (extra ``search``);
* ``train/``: the training command (``soft-infonce train``, ``examples/run_codesearch.py``);
* ``cli.py``: the ``soft-infonce`` console script (``python -m soft_infonce.codesearch``);
* ``plotting/``: figures (extra ``plot``);
* ``graphcodebert/``: GraphCodeBERT's data-flow inputs (extra ``graphcodebert``).
"""

"""``python -m soft_infonce.codesearch.train ARGS`` is ``soft-infonce train ARGS``."""

from __future__ import annotations

from soft_infonce.codesearch.train import main

if __name__ == "__main__":
    main(prog="python -m soft_infonce.codesearch.train")

"""``python -m soft_infonce.codesearch``: the ``soft-infonce`` command line."""

from __future__ import annotations

import sys

from soft_infonce.codesearch.cli import main

if __name__ == "__main__":
    sys.exit(main())

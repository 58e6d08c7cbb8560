"""Entry point: `python -m phoenix_cli` and the `phoenix` console script."""

from __future__ import annotations

import sys

from phoenix_cli.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

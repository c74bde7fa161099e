"""Shared plumbing for the thin scripts in stages/: one-line errors instead of tracebacks."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from dareg.errors import DataError
from dareg.params import ParamsError


def run(main: Callable[[], None]) -> None:
    """Call a stage's `main`; report bad input as one line on stderr and exit with status 2."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        main()
    except (DataError, ParamsError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

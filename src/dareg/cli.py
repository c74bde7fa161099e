"""Shared plumbing for the thin scripts in stages/: one-line errors instead of tracebacks."""
from __future__ import annotations

import logging
import os
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


def env_credentials(section: str, *names: str) -> list[str]:
    """Values of the environment variables `names`, which params `section` needs with source: api;
    a DataError naming the first one missing, before any work is done."""
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise DataError(f"environment variable {missing[0]} is not set; {section}.source: api needs "
                        f"{' and '.join(names)} (or set {section}.source: demo)")
    return [os.environ[name] for name in names]

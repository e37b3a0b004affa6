"""The `proxyless` logger family: every module logs under `proxyless.<module>`.

Libraries only log; the command line decides what is shown (`cli_logging`): progress (INFO)
on stdout as plain lines, warnings and errors on stderr, DEBUG with `--verbose`, only warnings
with `--quiet`. Embedding code (a notebook, a test) configures `proxyless` like any logger.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

ROOT = "proxyless"


def get_logger(module: str) -> logging.Logger:
    """The logger of `module` (pass `__name__`) in the `proxyless` family."""
    return logging.getLogger(ROOT).getChild(module)


@contextlib.contextmanager
def cli_logging(level: int) -> Iterator[None]:
    """Inside: `proxyless` records at `level` and above reach the terminal; restored on exit."""
    root = logging.getLogger(ROOT)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    handlers = (out, err)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    saved = root.level, root.propagate
    root.setLevel(level)
    root.propagate = False  # our lines once, not again through a root handler someone set up
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.flush()
        root.level, root.propagate = saved

"""What a benchmark writes to the console: progress on stderr, the result as stdout's last line.

Every script here keeps stdout for its one JSON summary (the last line, which a caller such as
`gpu_check.py` parses) and tags its progress lines on stderr with its own name, so several
benchmarks run side by side can be told apart. Scripts import this as `console`: run as
`python benchmarks/X.py`, their own folder is first on `sys.path`, and the project itself comes
from the editable install.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def progress_log(tag: str) -> Callable[[str], None]:
    """A `log(msg)` that prints `[tag] msg` to stderr at once (flushed: a hang shows its step)."""

    def log(msg: str) -> None:
        print(f"[{tag}] {msg}", file=sys.stderr, flush=True)

    return log


def print_summary(summary: Any) -> None:
    """The result as one JSON line on stdout, flushed (λ₂ and the like kept readable)."""
    print(json.dumps(summary, ensure_ascii=False), flush=True)


def pick_device(flag: str) -> str:
    """`--device auto|cpu|cuda` as a device name: auto is CUDA where there is one; asking for
    CUDA where there is none stops the benchmark with one line."""
    import torch

    if flag == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if flag == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    return flag

"""Atomic, pickle-free checkpoints.

Written to a temp file in the same folder and renamed, so a crash mid-write leaves the
previous checkpoint intact; read with `weights_only=True`, so a checkpoint can hold tensors,
numbers, strings, lists and dicts but never code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from nas_core.errors import ProxylessError, first_line
from nas_core.io import atomic_output


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ProxylessError(f"{p}: no such checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first = first_line(e)
        raise ProxylessError(f"{p}: not a loadable checkpoint ({first[:200]})") from None
    if not isinstance(state, dict):
        raise ProxylessError(f"{p}: not a proxyless-tune checkpoint")
    return state

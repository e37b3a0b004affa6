"""Environment variables set for a block and restored after it, as the caller had them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def environment(values: Mapping[str, str], keep_existing: bool = False) -> Iterator[None]:
    """`values` in `os.environ` inside the block; with `keep_existing`, a variable the caller
    already set keeps its value (a user's own setting wins). Afterwards each variable is what
    it was before, unset where it was unset."""
    chosen = {k: v for k, v in values.items() if not (keep_existing and k in os.environ)}
    before = {k: os.environ.get(k) for k in chosen}
    os.environ.update(chosen)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

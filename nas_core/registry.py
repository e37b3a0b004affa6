"""Name → builder registries with loud duplicates (the torchvision / timm pattern).

Every op, layer, block, net, space and strategy is found through one of these: a builder
registers under its own name (or a given one), `names("*MBConv*")` lists with wildcards.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nas_core.errors import ProxylessError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; registering a name twice is an error, an unknown name too."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: adds the decorated object under `name`, by default its own `__name__`."""

        def deco(obj: T) -> T:
            key = name if name is not None else obj.__name__  # type: ignore[attr-defined]
            if key in self._items:
                raise KeyError(f"duplicate {self.kind} name {key!r}")
            self._items[key] = obj
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove and return `name` (a plugin unloading, a test restoring the registry)."""
        if name not in self._items:
            raise ProxylessError(f"unknown {self.kind} {name!r}")
        return self._items.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._items))
            raise ProxylessError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching `pattern` (shell wildcards), sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

"""File reading and atomic writing with one-line errors that name the file."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from nas_core.errors import ProxylessError

T = TypeVar("T")


def read_text(path: str | Path) -> str:
    """A text file's content; missing, unreadable or empty is a ProxylessError naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProxylessError(f"{p}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ProxylessError(f"{p}: cannot read ({type(e).__name__})") from None
    if not text.strip():
        raise ProxylessError(f"{p}: file is empty")
    return text


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is a ProxylessError."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ProxylessError(
            f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None


def read_parquet(path: str | Path, what: str = "file") -> Any:
    """A Parquet file as a pyarrow Table; missing or unreadable is a ProxylessError naming it
    (`what`: the kind of file, as the message says it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise ProxylessError(f"{p}: no such {what}")
    try:
        return pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise ProxylessError(f"{p}: not a Parquet file ({str(e).splitlines()[0]})") from None


# YAML 1.2's floats that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot, as in
# `weight_decay: 4e-5` or the `1e-08` that json.dumps writes into a search's config.json
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


@functools.cache
def _yaml_1_2() -> tuple[type, type]:
    """PyYAML's safe loader and dumper (no Python objects from tags) with YAML 1.2's exponent
    floats: the loader reads `1e-5` as a number, so the dumper quotes a string that looks so."""
    import yaml

    class SafeLoader(yaml.SafeLoader):
        pass

    class SafeDumper(yaml.SafeDumper):
        pass

    for cls in (SafeLoader, SafeDumper):
        cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))
    return SafeLoader, SafeDumper


def dump_yaml(data: Any) -> str:
    """YAML text that `read_yaml` reads back as `data` (keys in their order)."""
    import yaml

    return yaml.dump(data, Dumper=_yaml_1_2()[1], sort_keys=False)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file the way `safe_load` does (never constructs Python objects from tags),
    reading `1e-5` as the number it is in YAML 1.2 and JSON."""
    import yaml

    text = read_text(path)
    try:
        return yaml.load(text, Loader=_yaml_1_2()[0])  # a SafeLoader: tags stay refused
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ProxylessError(f"{path}: invalid YAML ({first})") from None


def load_yaml_config(path: str | Path, build: Callable[[Mapping[str, Any]], T], what: str) -> T:
    """A YAML config file (safe_load; empty = all defaults) → `build(mapping)`; errors name it."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ProxylessError(f"{path}: {what} must be a mapping")
    try:
        return build(data)
    except ProxylessError as e:
        raise ProxylessError(f"{path}: {e}") from None


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """The one atomic write: a temp path beside `path` to write to, flushed to disk and renamed
    over `path` only if the block succeeds, so readers (and a crash) see the old or the new file,
    never half of one. The file gets the mode a plain `open` would give it (0666 less umask)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from teammates
        yield Path(tmp)
        with open(tmp, "rb") as f:  # the data on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask: read from /proc where Linux shows it, since reading it with
    `os.umask` means setting it for a moment, for every thread of the process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and put straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """`text` written to `path` through `atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

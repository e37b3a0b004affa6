"""Where a sweep's run folder lives: a local or NFS folder, or a `pyarrow.fs` URI.

`storage_path` may be a path (`runs`, `/shared/runs`) or a URI that `pyarrow.fs` understands
(`s3://bucket/runs`, `gs://…`, `file:///…`, with a query such as `?endpoint_override=…`).
Tune and Train write their experiments and checkpoints straight into it. The driver's own files
(sweep.yaml, results, figure, TensorBoard, architectures, events) are written into a local
working folder: for a path that folder *is* the run folder; for a URI it is a temporary copy
pulled from storage at the start and pushed back with `pyarrow.fs.copy_files` after each step of
the sweep, so an S3-only cluster needs no shared disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nas_core.errors import ProxylessError, first_line


def is_uri(path: str) -> bool:
    """A storage URI (`scheme://…`) rather than a local path."""
    return "://" in path


def join_uri(base: str, relative: str) -> str:
    """`base/relative` for a path or URI; a URI's query (`?endpoint_override=…`) stays last."""
    if not relative:
        return base
    if not is_uri(base):
        return f"{base.rstrip('/')}/{relative}"
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{relative}"))


def beside(location: str, name: str) -> str:
    """The file `name` in the folder of `location`, a path or URI (a URI's query stays last)."""
    if not is_uri(location):
        return str(Path(location).with_name(name))
    parts = urlsplit(location)
    return urlunsplit(parts._replace(path=str(PurePosixPath(parts.path).with_name(name))))


def file_name(location: str) -> str:
    """The last part of a path or URI (without a URI's query)."""
    return PurePosixPath(urlsplit(location).path if is_uri(location) else location).name


def split_run_location(location: str) -> tuple[str, str]:
    """`storage_path/name` (a path or URI) → (storage_path, name)."""
    if is_uri(location):
        parts = urlsplit(location)
        base, _, name = parts.path.rstrip("/").rpartition("/")
        if not name:
            raise ProxylessError(f"{location}: expected STORAGE_URI/NAME")
        return urlunsplit(parts._replace(path=base)), name
    p = Path(location).expanduser().resolve()
    return str(p.parent), p.name


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """pyarrow's I/O errors (no bucket, no access, no credentials) as one line naming `what`."""
    try:
        yield
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid/ArrowIOError subclass these
        first = first_line(e)
        raise ProxylessError(f"{what}: {first}") from None


@dataclass
class RunStorage:
    """The run folder `storage_path/name` and the driver's local working copy of it."""

    storage_path: str
    name: str
    fs: Any = field(init=False, repr=False)  # a pyarrow.fs.FileSystem
    path: str = field(init=False)  # the run folder on `fs`
    _work: Path | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from pyarrow import fs

        if not self.remote:
            self.fs = fs.LocalFileSystem()
            self.path = str(Path(self.storage_path).expanduser().resolve() / self.name)
            return
        with storage_errors(f"storage_path {self.storage_path}: not a storage URI pyarrow opens"):
            self.fs, base = fs.FileSystem.from_uri(self.storage_path)
        self.path = f"{base.rstrip('/')}/{self.name}"

    @property
    def remote(self) -> bool:
        return is_uri(self.storage_path)

    def url(self, relative: str = "") -> str:
        """What to show a user or hand to Tune: a local path, or the URI of `relative`."""
        if not self.remote:
            return join_uri(self.path, relative)
        return join_uri(join_uri(self.storage_path, self.name), relative)

    @property
    def work_dir(self) -> Path:
        """The local folder the driver writes into (the run folder itself for a path)."""
        if self._work is None:
            if self.remote:  # the same folder on every call: Tune's restored callbacks name it
                digest = hashlib.sha1(self.url().encode()).hexdigest()[:12]
                self._work = Path(tempfile.gettempdir()) / f"proxyless-run-{digest}" / self.name
                self._work.mkdir(parents=True, exist_ok=True)
            else:
                self._work = Path(self.path)
        return self._work

    def exists(self, relative: str) -> bool:
        from pyarrow import fs

        with storage_errors(self.url(relative)):
            info = self.fs.get_file_info(f"{self.path}/{relative}")
        return info.type != fs.FileType.NotFound

    def pull(self, *relative: str) -> None:
        """Copy these driver files from a URI run folder into the working copy (if present)."""
        if not self.remote:
            return
        from pyarrow import fs

        for rel in relative:
            with storage_errors(self.url(rel)):
                kind = self.fs.get_file_info(f"{self.path}/{rel}").type
            if kind == fs.FileType.NotFound:
                continue
            target = self.work_dir / rel
            # copy_files writes a folder's files into an existing folder
            (target if kind == fs.FileType.Directory else target.parent).mkdir(
                parents=True, exist_ok=True
            )
            with storage_errors(self.url(rel)):
                fs.copy_files(
                    f"{self.path}/{rel}",
                    str(target),
                    source_filesystem=self.fs,
                    destination_filesystem=fs.LocalFileSystem(),
                )

    def push(self) -> None:
        """Copy the working copy's files into a URI run folder (no-op for a path)."""
        if not self.remote or not self.work_dir.exists():
            return
        from pyarrow import fs

        with storage_errors(self.url()):
            self.fs.create_dir(self.path, recursive=True)  # copy_files makes only subfolders
            fs.copy_files(
                str(self.work_dir),
                self.path,
                source_filesystem=fs.LocalFileSystem(),
                destination_filesystem=self.fs,
            )

    def copy_in(
        self,
        source_fs: Any,
        source: str,
        names: Sequence[str],
        relative: str,
        optional: Sequence[str] = (),
    ) -> str:
        """Copy files `names` of a folder (a trial's checkpoint) into the run folder's
        `relative` folder, skipping those of `optional` the folder lacks; returns its url."""
        from pyarrow import fs

        with storage_errors(self.url(relative)):
            self.fs.create_dir(f"{self.path}/{relative}", recursive=True)
            for name in names:
                if name in optional and _absent(source_fs, f"{source}/{name}"):
                    continue
                fs.copy_files(
                    f"{source}/{name}",
                    f"{self.path}/{relative}/{name}",
                    source_filesystem=source_fs,
                    destination_filesystem=self.fs,
                )
        return self.url(relative)

    def close(self) -> None:
        """Drop a URI run's temporary working copy (after `push`)."""
        if self.remote and self._work is not None:
            shutil.rmtree(self._work.parent, ignore_errors=True)
            self._work = None


def _absent(filesystem: Any, path: str) -> bool:
    from pyarrow import fs

    return filesystem.get_file_info(path).type == fs.FileType.NotFound


def fetch_if_present(location: str, into: Path) -> Path | None:
    """`fetch_to_local` for a file that may not exist: None where there is none."""
    if not is_uri(location):
        return Path(location) if Path(location).is_file() else None
    from pyarrow import fs

    with storage_errors(f"{location}: cannot read"):
        source_fs, path = fs.FileSystem.from_uri(location)
        if _absent(source_fs, path):
            return None
    return fetch_to_local(location, into)


def fetch_to_local(location: str, into: Path) -> Path:
    """A local path for `location`: itself, or a copy of the URI's file inside `into`."""
    if not is_uri(location):
        return Path(location)
    from pyarrow import fs

    with storage_errors(f"{location}: cannot read"):
        source_fs, path = fs.FileSystem.from_uri(location)
        into.mkdir(parents=True, exist_ok=True)
        target = into / Path(path).name
        fs.copy_files(
            path,
            str(target),
            source_filesystem=source_fs,
            destination_filesystem=fs.LocalFileSystem(),
        )
    return target

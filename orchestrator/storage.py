"""Where a sweep's run folder lives: a local or NFS folder, or a `pyarrow.fs` URI.

`storage_path` may be a path (`runs`, `/mnt/efs/runs`) or a URI that `pyarrow.fs` understands
(`s3://bucket/runs`, `gs://…`, `file:///…`). Tune and Train write their experiments and
checkpoints straight into it. The driver's own files (sweep.yaml, results, figure, TensorBoard,
architectures, events) are written into a local working folder: for a path that folder *is* the
run folder; for a URI it is a temporary copy pulled from storage at the start and pushed back with
`pyarrow.fs.copy_files` after each phase, so an S3-only cluster needs no shared disk.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_core.errors import ProxylessError


def is_uri(path: str) -> bool:
    return "://" in path


def split_run_location(location: str) -> tuple[str, str]:
    """`storage_path/name` (a path or URI) → (storage_path, name)."""
    if is_uri(location):
        base, _, name = location.rstrip("/").rpartition("/")
        if not name or base.endswith(":/"):
            raise ProxylessError(f"{location}: expected STORAGE_URI/NAME")
        return base, name
    p = Path(location).expanduser().resolve()
    return str(p.parent), p.name


@dataclass
class RunStorage:
    """The run folder `storage_path/name` and the driver's local working copy of it."""

    storage_path: str
    name: str
    _work: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if is_uri(self.storage_path):
            from pyarrow import fs

            try:
                self.fs, base = fs.FileSystem.from_uri(self.storage_path)
            except Exception as e:  # pyarrow raises ArrowInvalid/OSError for unknown schemes
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ProxylessError(
                    f"storage_path {self.storage_path}: not a storage URI pyarrow can open "
                    f"({first})"
                ) from None
            self.path = f"{base.rstrip('/')}/{self.name}"
        else:
            from pyarrow import fs

            self.fs = fs.LocalFileSystem()
            self.path = str(Path(self.storage_path).expanduser().resolve() / self.name)

    @property
    def remote(self) -> bool:
        return is_uri(self.storage_path)

    def url(self, relative: str = "") -> str:
        """What to show a user or hand to Tune: a local path, or the URI of `relative`."""
        base = f"{self.storage_path.rstrip('/')}/{self.name}" if self.remote else self.path
        return f"{base}/{relative}" if relative else base

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

        info = self.fs.get_file_info(f"{self.path}/{relative}")
        return info.type != fs.FileType.NotFound

    def pull(self, *relative: str) -> None:
        """Copy these driver files from a URI run folder into the working copy (if present)."""
        if not self.remote:
            return
        from pyarrow import fs

        for rel in relative:
            source = f"{self.path}/{rel}"
            info = self.fs.get_file_info(source)
            if info.type == fs.FileType.NotFound:
                continue
            target = self.work_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.copy_files(
                source,
                str(target),
                source_filesystem=self.fs,
                destination_filesystem=fs.LocalFileSystem(),
            )

    def push(self) -> None:
        """Copy the working copy's files into a URI run folder (no-op for a path)."""
        if not self.remote or not self.work_dir.exists():
            return
        from pyarrow import fs

        fs.copy_files(
            str(self.work_dir),
            self.path,
            source_filesystem=fs.LocalFileSystem(),
            destination_filesystem=self.fs,
        )

    def copy_in(self, source_fs: Any, source: str, relative: str) -> str:
        """Copy a folder (a trial's checkpoint) into the run folder; returns its url."""
        from pyarrow import fs

        self.fs.create_dir(f"{self.path}/{relative}", recursive=True)
        fs.copy_files(
            source,
            f"{self.path}/{relative}",
            source_filesystem=source_fs,
            destination_filesystem=self.fs,
        )
        return self.url(relative)

    def close(self) -> None:
        """Drop a URI run's temporary working copy (after `push`)."""
        if self.remote and self._work is not None:
            shutil.rmtree(self._work.parent, ignore_errors=True)
            self._work = None


def fetch_to_local(location: str, into: Path) -> Path:
    """A local path for `location`: itself, or a copy of the URI's file inside `into`."""
    if not is_uri(location):
        return Path(location)
    from pyarrow import fs

    try:
        source_fs, path = fs.FileSystem.from_uri(location)
        into.mkdir(parents=True, exist_ok=True)
        target = into / Path(path).name
        fs.copy_files(
            path,
            str(target),
            source_filesystem=source_fs,
            destination_filesystem=fs.LocalFileSystem(),
        )
    except (OSError, ValueError) as e:  # pyarrow's errors subclass these
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ProxylessError(f"{location}: cannot read ({first})") from None
    return target

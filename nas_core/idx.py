"""IDX files (the MNIST family's format), read whole and checked, errors that name the file.

An IDX file is two zero bytes, a type code (0x08: unsigned bytes, the only one the MNIST family
uses), the number of dimensions, each dimension as a big-endian int32, then the data in C
order. Debian's `dataset-fashion-mnist` ships them gzipped; a file unpacked by hand is read as
well. Reading is NumPy's: no torchvision import (it costs seconds per process) and no download.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from nas_core.errors import ProxylessError

UBYTE = 0x08


def find_idx(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/name.gz` where only the gzipped one is there."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    raise ProxylessError(f"{folder / name}: no such file (nor {name}.gz beside it)")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The unsigned-byte array of `ndim` dimensions that `path` holds (gzipped or not)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        raise ProxylessError(f"{path}: cannot be read ({' '.join(str(e).split())})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != UBYTE or raw[3] != ndim:
        raise ProxylessError(
            f"{path}: not an IDX file of {ndim}-dimensional unsigned bytes "
            f"(magic {raw[:4].hex() or 'missing'}, expected 0000{UBYTE:02x}{ndim:02x})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ProxylessError(f"{path}: truncated in its header ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ProxylessError(
            f"{path}: holds {len(raw) - header} bytes of data, its header "
            f"({' x '.join(map(str, shape))}) says {size}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_images_and_labels(folder: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """(N × H × W images, N labels) from the IDX pair `images` / `labels` in `folder`."""
    image_path, label_path = find_idx(folder, images), find_idx(folder, labels)
    x, y = read_idx(image_path, 3), read_idx(label_path, 1)
    if len(x) != len(y):
        raise ProxylessError(
            f"{image_path}: holds {len(x)} images but {label_path} {len(y)} labels"
        )
    return x, y.astype(np.int64)

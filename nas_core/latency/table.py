"""`LatencyTable`: per-device latency of every layer signature, with device metadata.

Stored as Parquet (one row per key: the key, its parsed fields, count, mean and var in ms;
device metadata in the schema metadata). Imports and exports the official ProxylessNAS YAML
(`key: {count, mean, var}`; our export adds a `_meta` mapping that the official loader ignores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nas_core.errors import ProxylessError
from nas_core.io import atomic_output, atomic_write_text, dump_yaml, read_parquet, read_yaml
from nas_core.latency.keys import parse_key, parse_shape

META_KEY = "_meta"
_PARQUET_META = b"proxyless_tune.latency_meta"


@dataclass(frozen=True)
class LatencyEntry:
    """Statistics of one layer signature's latency, in milliseconds."""

    count: int
    mean: float
    var: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ProxylessError(f"latency entry count must be an integer >= 1, got {self.count!r}")
        for name in ("mean", "var"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or v < 0
            ):
                raise ProxylessError(
                    f"latency entry {name} must be a finite number >= 0, got {v!r}"
                )


@dataclass(frozen=True)
class DeviceMeta:
    """Where and how a table was measured."""

    name: str = "unknown"
    kind: str = "unknown"  # cpu, cuda, or unknown (an imported table)
    threads: int = 0
    batch_size: int = 1
    torch_version: str = ""
    date: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # whole-net correction fitted on measured nets (`latency validate --calibrate`):
    # {"scale": a, "offset_ms": b, "nets": n}; empty = predictions are the plain sums
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def device(self) -> str:
        """The device a front is for: the name, with the thread count of a CPU table (one
        CPU at 1 and at 2 threads is two devices, with two units of milliseconds)."""
        if self.kind == "cpu" and self.threads:
            return f"{self.name}, {self.threads} thread{'s' if self.threads > 1 else ''}"
        return self.name

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DeviceMeta:
        if not isinstance(config, Mapping):
            raise ProxylessError("latency table metadata must be a mapping")
        unknown = set(config) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProxylessError(
                f"latency table metadata: unknown key(s) {', '.join(sorted(unknown))}"
            )
        cal = config.get("calibration") or {}
        if (
            not isinstance(cal, Mapping)
            or not all(
                isinstance(cal.get(k, 0), int | float) and math.isfinite(cal.get(k, 0))
                for k in ("scale", "offset_ms")
            )
            or float(cal.get("scale", 1.0)) <= 0
        ):
            raise ProxylessError(
                "latency table metadata: calibration needs a finite scale > 0 and offset_ms, "
                f"got {cal!r}"
            )
        return cls(**config)

    def require_here(self, where: str, purpose: str) -> None:
        """Refuse, in one line, unless the table was profiled on this very device: `purpose`
        (filling in entries, validating) measures here, so it must measure what the table did."""
        if self.kind not in ("cpu", "cuda"):
            raise ProxylessError(
                f"{where}: {purpose} needs a table profiled here, not an imported one"
            )
        local = DeviceMeta.local(self.kind, self.threads, self.batch_size)
        if local.name != self.name:
            raise ProxylessError(
                f"{where}: {purpose} refused: the table is for {self.name!r}, this device is "
                f"{local.name!r}"
            )

    @classmethod
    def local(cls, kind: str, threads: int, batch_size: int) -> DeviceMeta:
        """Metadata of this machine: the CPU model, or the CUDA device with its software stack,
        MIG and clock state (what makes two GPU tables comparable or not)."""
        import torch

        extra: dict[str, Any] = {"platform": platform.platform()}
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise ProxylessError("a CUDA table needs a CUDA device; torch sees none here")
            name = torch.cuda.get_device_name()
            extra.update(_cuda_details(torch))
        else:
            name = _cpu_name()
        return cls(
            name=name,
            kind=kind,
            threads=threads,
            batch_size=batch_size,
            torch_version=str(torch.__version__),
            date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            extra=extra,
        )


def _cuda_details(torch: Any) -> dict[str, Any]:
    """CUDA / cuDNN versions, compute capability, SM count, MIG and clocks of this GPU."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    out: dict[str, Any] = {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "mig": "MIG" in torch.cuda.get_device_name(),
    }
    try:  # clocks need NVML (nvidia-ml-py); a table without them is still valid
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        out["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        out["sm_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        out["mem_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    except Exception as e:  # NVML absent, or refused in a container or MIG slice: say which
        out["clocks"] = f"not read ({type(e).__name__})"
        return out
    with contextlib.suppress(pynvml.NVMLError):  # GPUs without MIG answer NotSupported
        out["mig"] = out["mig"] or bool(pynvml.nvmlDeviceGetMigMode(handle)[0])
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class LatencyTable:
    """Mapping from latency key to `LatencyEntry`, plus the device it was measured on."""

    def __init__(
        self, entries: Mapping[str, LatencyEntry] | None = None, meta: DeviceMeta | None = None
    ) -> None:
        self.entries: dict[str, LatencyEntry] = dict(entries or {})
        self.meta = meta or DeviceMeta()
        for key in self.entries:
            parse_key(key)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatencyTable) and (self.entries, self.meta) == (
            other.entries,
            other.meta,
        )

    def mean(self, key: str) -> float:
        return self.entries[key].mean

    @property
    def scale(self) -> float:
        """Whole-net prediction = scale · Σ entries + offset_ms (1 and 0 uncalibrated)."""
        return float(self.meta.calibration.get("scale", 1.0))

    @property
    def offset_ms(self) -> float:
        return float(self.meta.calibration.get("offset_ms", 0.0))

    def with_calibration(self, calibration: Mapping[str, Any] | None) -> LatencyTable:
        """This table with another whole-net correction (None: the plain sums)."""
        meta = dataclasses.replace(self.meta, calibration=dict(calibration or {}))
        return LatencyTable(self.entries, meta)

    def missing(self, keys: Iterable[str | None]) -> list[str]:
        """The keys (None = free, e.g. Zero) that have no entry, in order, without repeats."""
        return list(dict.fromkeys(k for k in keys if k is not None and k not in self.entries))

    def add(self, key: str, entry: LatencyEntry) -> None:
        parse_key(key)
        self.entries[key] = entry

    # ---- YAML (official format) ----

    def to_yaml_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {META_KEY: self.meta.to_config()}
        for key in sorted(self.entries):
            e = self.entries[key]
            out[key] = {"count": e.count, "mean": e.mean, "var": e.var}
        return out

    def save_yaml(self, path: str | Path) -> None:
        atomic_write_text(path, dump_yaml(self.to_yaml_dict()))

    @classmethod
    def from_yaml_dict(cls, data: Any, where: str) -> LatencyTable:
        if not isinstance(data, Mapping):
            raise ProxylessError(f"{where}: a latency table must be a mapping of key → stats")
        meta = DeviceMeta(name=Path(where).stem, kind="unknown")
        entries = {}
        for key, stats in data.items():
            if key == META_KEY:
                try:
                    meta = DeviceMeta.from_config(stats)
                except (ProxylessError, TypeError) as e:
                    raise ProxylessError(f"{where}: {e}") from None
                continue
            if not isinstance(stats, Mapping) or not {"count", "mean", "var"} <= set(stats):
                raise ProxylessError(f"{where}: entry {key!r} needs count, mean and var")
            entries[key] = (stats["count"], stats["mean"], stats["var"])
        return cls._from_rows(entries, meta, where)

    @classmethod
    def load_yaml(cls, path: str | Path) -> LatencyTable:
        return cls.from_yaml_dict(read_yaml(path), str(path))

    # ---- Parquet ----

    def save_parquet(self, path: str | Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = sorted(self.entries)
        parsed = [parse_key(k) for k in keys]

        def col(name: str) -> list[str | None]:
            return [p.get(name) for p in parsed]

        table = pa.table(
            {
                "key": keys,
                "kind": col("kind"),
                "input": col("input"),
                "output": col("output"),
                "op": col("op"),
                "expand": col("expand"),
                "kernel": col("kernel"),
                "stride": col("stride"),
                "idskip": col("idskip"),
                "count": pa.array([self.entries[k].count for k in keys], pa.int64()),
                "mean": pa.array([self.entries[k].mean for k in keys], pa.float64()),
                "var": pa.array([self.entries[k].var for k in keys], pa.float64()),
            }
        )
        meta = json.dumps(self.meta.to_config()).encode()
        table = table.replace_schema_metadata({_PARQUET_META: meta})
        with atomic_output(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def load_parquet(cls, path: str | Path) -> LatencyTable:
        p = Path(path)
        table = read_parquet(p)
        need = {"key", "count", "mean", "var"}
        if not need <= set(table.column_names):
            raise ProxylessError(f"{p}: a latency table needs columns {', '.join(sorted(need))}")
        raw = (table.schema.metadata or {}).get(_PARQUET_META)
        try:
            meta = DeviceMeta.from_config(json.loads(raw)) if raw else DeviceMeta(name=p.stem)
        except (json.JSONDecodeError, TypeError) as e:
            raise ProxylessError(f"{p}: malformed device metadata ({e})") from None
        cols = table.select(["key", "count", "mean", "var"]).to_pydict()
        rows = zip(cols["count"], cols["mean"], cols["var"], strict=True)
        return cls._from_rows(dict(zip(cols["key"], rows, strict=True)), meta, str(p))

    @classmethod
    def _from_rows(
        cls, rows: Mapping[str, tuple[Any, Any, Any]], meta: DeviceMeta, where: str
    ) -> LatencyTable:
        """key → (count, mean, var), validated; errors name the file and the entry."""
        entries = {}
        for key, (count, mean, var) in rows.items():
            try:
                entries[key] = LatencyEntry(count, mean, var)
            except ProxylessError as e:
                raise ProxylessError(f"{where}: entry {key!r}: {e}") from None
        try:
            return cls(entries, meta)
        except ProxylessError as e:
            raise ProxylessError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Parquet (`.parquet`) or the official YAML (anything else)."""
        return cls.load_parquet(path) if str(path).endswith(".parquet") else cls.load_yaml(path)

    def save(self, path: str | Path) -> None:
        if str(path).endswith((".yaml", ".yml")):
            self.save_yaml(path)
        else:
            self.save_parquet(path)


__all__ = ["DeviceMeta", "LatencyEntry", "LatencyTable", "parse_shape"]

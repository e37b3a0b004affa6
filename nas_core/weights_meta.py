"""What a retrained net's weights know about themselves: the record written beside them.

As torchvision's `Weights.meta` and timm's `PretrainedCfg` do, the record says what the weights
learned and how: the dataset (and its folder), the class names where the dataset names them, the
input resolution and the mean / std the inputs were normalised with, the recipe and run settings,
the metrics the net reached and the device of the latency table that priced it. `retrain` writes
it as `<weights stem>.meta.json` beside `weights.pt` (`meta_name`); `proxyless export` and
`proxyless evaluate` read it, so their dataset and resolution flags are needed only for weights
without one (the published `.pth` files, and ours written before the record), and a flag that
contradicts it is refused.

A JSON file beside the weights, not inside them: `weights.pt` stays the bare state_dict that
`torch.load` + `load_state_dict` (and older copies of this tool) read, the record reads with
`cat`, and weights without one load exactly as before. Not inside retrain.json either: that is
the run's report, epoch history and all, and a reader of the input's facts should not need it.
The cost: a weights file moved without its record loses its facts (the flags are needed again).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field, model_validator

from nas_core.config import ConfigModel, FiniteFloat, RunSettings
from nas_core.data import DataConfig
from nas_core.errors import ProxylessError
from nas_core.io import atomic_write_text, read_json
from nas_core.retrain_config import RetrainRecipe

META_FORMAT = "proxyless-tune/weights-meta/1"
META_SUFFIX = ".meta.json"

Channels = tuple[FiniteFloat, FiniteFloat, FiniteFloat]


def meta_name(weights_name: str) -> str:
    """The record's file name beside a weights file: `weights.pt` → `weights.meta.json`."""
    return PurePosixPath(weights_name).with_suffix(META_SUFFIX).name


class RetrainMetrics(ConfigModel):
    """What the net scored and cost when its weights were written (`RetrainResult.summary`)."""

    test_accuracy: FiniteFloat = Field(ge=0, le=1)
    test_loss: float
    test_samples: int = Field(ge=0)  # the test split's size: how far one image moves accuracy
    params: int = Field(ge=0)
    macs: int = Field(ge=0)
    latency_table_ms: float | None = None  # priced by the table of `latency_device`
    latency_measured_ms: float | None = None  # timed on the device it trained on
    images_per_s: float | None = None  # the last epoch's training throughput


class WeightsMeta(ConfigModel):
    """The facts of one set of trained weights (see the module docstring)."""

    format: Literal["proxyless-tune/weights-meta/1"] = META_FORMAT
    data: DataConfig  # dataset, folder, resolution and splits the weights were trained on
    num_classes: int = Field(ge=1)
    class_names: tuple[str, ...] | None = Field(None, strict=False)  # label i's name, if known
    mean: Channels = Field(strict=False)  # per channel, of pixels scaled to [0, 1]
    std: Channels = Field(strict=False)
    recipe: RetrainRecipe
    run: RunSettings  # seed, device, precision and memory format it trained with
    metrics: RetrainMetrics
    latency_device: str | None = None  # the device of the table behind latency_table_ms

    @model_validator(mode="after")
    def _consistent(self) -> WeightsMeta:
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names: {len(self.class_names)} names for {self.num_classes} classes"
            )
        if min(self.std) <= 0:
            raise ValueError(f"std: must be > 0, got {list(self.std)}")
        return self

    @property
    def dataset(self) -> str:
        return self.data.dataset

    @property
    def resolution(self) -> int:
        return self.data.resolution

    def save(self, path: str | Path) -> None:
        """Write the record as JSON, atomically (temp file + rename)."""
        atomic_write_text(path, json.dumps(self.to_config(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, where: str | None = None) -> WeightsMeta:
        """Read a record; a malformed one is one line naming the file (`where`: its URI, for
        a local copy of a remote file) and the field."""
        where = where or str(path)
        try:
            config = read_json(path)
        except ProxylessError as e:
            raise ProxylessError(str(e).replace(str(path), where)) from None
        if not isinstance(config, dict):
            kind = type(config).__name__
            raise ProxylessError(f"{where}: not a weights record (a JSON {kind}, not an object)")
        if config.get("format") != META_FORMAT:
            got = config.get("format")
            raise ProxylessError(
                f"{where}: not a weights record (format {got!r}, expected {META_FORMAT!r})"
            )
        try:
            return cls.from_config(config)
        except ProxylessError as e:
            raise ProxylessError(f"{where}: {e}") from None

    @classmethod
    def beside(cls, weights: str | Path) -> WeightsMeta | None:
        """The record beside a local weights file, or None where it has none."""
        path = Path(weights).with_name(meta_name(Path(weights).name))
        return cls.load(path) if path.is_file() else None

    def metadata(self) -> dict[str, str]:
        """The record as text key / values, as a deployment file's metadata holds them (ONNX)."""
        facts = {
            "dataset": self.dataset,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "recipe": json.dumps({**self.recipe.to_config(), **self.run.to_config()}),
            "metrics": json.dumps(self.metrics.to_config()),
        }
        if self.class_names is not None:
            facts["class_names"] = json.dumps(list(self.class_names))
        if self.metrics.latency_table_ms is not None and self.latency_device is not None:
            facts["latency_ms"] = f"{self.metrics.latency_table_ms:.4f}"
            facts["latency_device"] = self.latency_device
        return facts

"""What one retrain is: the recipe a sweep's `retrain` section holds, and the run around it
(seed, device, precision, data, table), as frozen pydantic models.

Apart from `nas_core.retrain` so that the record written beside a retrained net's weights
(`nas_core.weights_meta`) can hold the recipe without importing the training loop that writes it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from nas_core.config import ConfigModel, FiniteFloat, RunSettings
from nas_core.data import DataConfig


class RetrainRecipe(ConfigModel):
    """How a derived net retrains (a sweep's `retrain` section is exactly this).

    Official: 300 epochs, lr 0.05 cosine, weight decay 4e-5 (not on BN).
    """

    epochs: int = Field(10, ge=1)
    lr: FiniteFloat = Field(0.05, gt=0)
    momentum: FiniteFloat = Field(0.9, ge=0, lt=1)
    weight_decay: FiniteFloat = Field(4e-5, ge=0)
    label_smoothing: FiniteFloat = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(64, ge=1)
    compile: bool = False  # torch.compile the standalone net for training
    measure_latency: bool = True  # time the net here after training


class RetrainConfig(RetrainRecipe, RunSettings):
    """A retrain run: the recipe, the data, where it trains and the table that prices the net."""

    data: DataConfig = DataConfig()
    lut: Annotated[str, Field(min_length=1)] | None = None

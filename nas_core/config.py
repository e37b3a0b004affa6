"""Config round-trip helpers shared by every buildable thing.

Each layer records its constructor arguments as attributes of the same name (the once-for-all
convention), so `to_config()` can be derived from the signature instead of written by hand.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

from nas_core.errors import ProxylessError


def init_kwargs(obj: object) -> dict[str, Any]:
    """The constructor arguments of `obj`, read back from attributes of the same name."""
    params = inspect.signature(type(obj).__init__).parameters
    return {n: copy.deepcopy(getattr(obj, n)) for n in params if n != "self"}


def checked_kwargs(cls: type, config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`config` minus its `name`, after checking every key is a constructor argument of `cls`."""
    if not isinstance(config, Mapping):
        raise ProxylessError(f"{where}: expected an object, got {type(config).__name__}")
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: copy.deepcopy(v) for k, v in config.items() if k != "name"}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ProxylessError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    missing = [
        n
        for n, p in params.items()
        if n != "self" and p.default is inspect.Parameter.empty and n not in kwargs
    ]
    if missing:
        raise ProxylessError(f"{where}: missing key(s) {', '.join(missing)} for {cls.__name__}")
    return kwargs


def require_int(value: Any, field: str, minimum: int = 0) -> int:
    """`value` as an int ≥ `minimum`, or a ProxylessError naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProxylessError(f"{field} must be an integer >= {minimum}, got {value!r}")
    return value


AMP_MODES = ("off", "bf16", "fp16")  # weight-step precision (nas_core.precision.Amp)


def check_amp(mode: Any, field: str) -> None:
    """One line naming `field` when `mode` is not one of `AMP_MODES`."""
    if not isinstance(mode, str) or mode not in AMP_MODES:
        raise ProxylessError(f"{field} must be one of {', '.join(AMP_MODES)}, got {mode!r}")

"""Typed configs: the one base model, its field types, and the one way a bad value is reported.

Every config is a frozen pydantic model with strict types (YAML's `"4"` is not an int, `true`
is not a number), unknown keys refused, ranges on the fields and defaults declared once. A
`ValidationError` becomes one `ProxylessError` line naming the dotted field (`retrain.momentum:
should be >= 0, got -1`); the reader of a file prefixes its name. Layers and nets (which are
`nn.Module`s, not configs) round-trip through their constructor arguments instead
(`init_kwargs` / `checked_kwargs`, the once-for-all convention), and `typed` validates those
arguments with the same pydantic and the same one-line errors.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, validate_call

from nas_core.errors import ProxylessError

AmpMode = Literal["off", "bf16", "fp16"]  # weight-step precision (nas_core.precision.Amp)
AMP_MODES: tuple[str, ...] = get_args(AmpMode)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _device_name(name: str) -> str:
    """Syntax only: a config may be written on a machine without the device."""
    if name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise ValueError("must be cpu, cuda or cuda:N")


DeviceName = Annotated[str, AfterValidator(_device_name)]


class ConfigModel(BaseModel):
    """Base of every config: frozen, strict, unknown keys refused, `to_config`/`from_config`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def to_config(self) -> dict[str, Any]:
        """A JSON-safe dict that `from_config` reads back into an equal model."""
        return self.model_dump(mode="json")

    @classmethod
    def from_config(cls, config: Any) -> Self:
        """Validate `config` (not mutated); a bad value is one `ProxylessError` line."""
        return cls._validated(config)

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, validated like a config read from a file."""
        return self._validated({**self.model_dump(), **changes})

    @classmethod
    def _validated(cls, config: Any) -> Self:
        try:
            return cls.model_validate(config)
        except ValidationError as e:
            raise config_error(e) from None


class RunSettings(ConfigModel):
    """Seed, device and precision: shared by searches, retrains and the sweeps that run both."""

    seed: int = Field(0, ge=0)
    device: DeviceName = "cpu"  # cpu, cuda or cuda:N; a Ray worker uses the GPU Ray assigns it
    amp: AmpMode = "off"  # weight steps in off (fp32) | bf16 | fp16; arch steps are always fp32
    channels_last: bool = False  # NHWC weights and inputs (tensor-core convolutions on CUDA)


def config_error(error: ValidationError) -> ProxylessError:
    """The first of pydantic's errors as `dotted.field: what is wrong, got <value>`."""
    errors = error.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"] if p != "[key]")  # a dict key's own error
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        text = "unknown key"
    elif kind == "missing":
        text = "required"
    else:
        text = first["msg"].removeprefix("Value error, ").removeprefix("Input ")
        if kind in _SHORT:
            ctx = {
                k: f"{v:g}" if isinstance(v, float) else v for k, v in first.get("ctx", {}).items()
            }
            text = _SHORT[kind].format(**ctx)
        inner = re.match(r"([A-Za-z_][\w.]*): (.*)", text) if kind == "value_error" else None
        if inner and field:  # a nested config's own error: `space` + `B: ...` is `space.B: ...`
            field, text = f"{field}.{inner.group(1)}", inner.group(2)
        if not isinstance(value, Mapping) and "got " not in text:
            text = f"{text}, got {value!r}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProxylessError(f"{field}: {text}{more}" if field else f"{text}{more}")


# pydantic's wording, shortened to what a config reader needs
_SHORT = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "literal_error": "must be one of {expected}",
    "finite_number": "must be a finite number",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "tuple_type": "must be a list",
    "string_too_short": "must not be empty",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "takes at most {max_length} item(s)",
}


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


# ---- layers, blocks and nets: built from official net.config dicts ----

# Their constructors are the schema: `@typed` checks every argument against its annotation
# (strict, ranges from `Annotated[..., Field(...)]`, modules by isinstance), so a net.config
# value is validated where it is read, by the same pydantic that validates every other config.
typed = validate_call(config=ConfigDict(strict=True, arbitrary_types_allowed=True))

T = TypeVar("T")


def construct(cls: type[T], kwargs: Mapping[str, Any], where: str) -> T:
    """`cls(**kwargs)` for values read from a file: a bad one is `where.field: what, got value`."""
    try:
        return cls(**kwargs)
    except ValidationError as e:
        raise ProxylessError(f"{where}.{config_error(e)}") from None


def config_list(value: Any, where: str) -> list[Any]:
    """A list read from a config, or a one-line error naming `where`."""
    if not isinstance(value, list):
        raise ProxylessError(f"{where}: must be a list, got {value!r:.80}")
    return value

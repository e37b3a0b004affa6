"""Layers in the official ProxylessNAS layer-config format (`LAYERS`).

Every layer's `to_config()` is exactly the dict the official `net.config` files use (`name`
plus constructor arguments), so exporting a standalone net is `net.to_config()` and importing is
`layer_from_config`. The candidate ops that build these layers are in `nas_core.ops`.
Activations are never in-place: the binary-gate backward re-runs candidates on a saved input,
which an in-place op could have overwritten.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from nas_core.config import checked_kwargs, construct, init_kwargs, typed
from nas_core.errors import ProxylessError
from nas_core.registry import Registry

LAYERS: Registry[type[Layer]] = Registry("layer")


# The types of a layer's config: every constructor argument is checked against its annotation
# (`typed`), so a net.config with a bad value fails where it is read, naming the layer and field
Channels = Annotated[int, Field(ge=1, le=1 << 16)]
Size = Annotated[int, Field(ge=1, le=64)]  # kernel size, stride, dilation, expand ratio
Rate = Annotated[float, Field(ge=0, lt=1)]  # dropout
ActFunc = Literal["relu", "relu6", "tanh", "sigmoid"] | None
OpsOrder = Literal[tuple("_".join(p) for p in itertools.permutations(("weight", "bn", "act")))]


class Layer(nn.Module):
    """Base of all config-buildable layers: `to_config()` / `from_config()` round trip."""

    config_name: ClassVar[str]

    def to_config(self) -> dict[str, Any]:
        return {"name": self.config_name, **init_kwargs(self)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Layer:
        return construct(cls, checked_kwargs(cls, config, cls.config_name), cls.config_name)


def layer_from_config(config: Mapping[str, Any] | None) -> nn.Module | None:
    """Build any registered layer from its config; `None` stays `None` (an absent shortcut)."""
    if config is None:
        return None
    if not isinstance(config, Mapping) or "name" not in config:
        raise ProxylessError(f"layer config must be an object with a 'name', got {config!r:.80}")
    return LAYERS.get(config["name"]).from_config(config)


def _activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    return acts[name]()  # `ActFunc` lists exactly these


def _groups_divide(layer: Layer, groups: int, *channels: int) -> None:
    if any(c % groups for c in channels):
        raise ProxylessError(
            f"{layer.config_name}: groups {groups} must divide channels {channels}"
        )


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: interleave the `groups` channel groups."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class _OrderedLayer(Layer):
    """A weight op with optional BN, activation and dropout applied in `ops_order`."""

    @typed
    def __init__(
        self,
        in_channels: Channels,
        out_channels: Channels,
        use_bn: bool,
        act_func: ActFunc,
        dropout_rate: Rate,
        ops_order: OpsOrder,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.use_bn = use_bn
        self.act_func = act_func
        self.dropout_rate = dropout_rate
        self.ops_order = ops_order
        order = ops_order.split("_")
        self._order = order
        bn_channels = in_channels if order.index("bn") < order.index("weight") else out_channels
        self.bn = self._bn(bn_channels) if use_bn else None
        self.activation = _activation(act_func)
        self.dropout = self._dropout(dropout_rate) if dropout_rate > 0 else None

    def _bn(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels)

    def _dropout(self, rate: float) -> nn.Module:
        return nn.Dropout2d(rate)

    def weight_call(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self._order:
            if step == "weight":
                if self.dropout is not None:
                    x = self.dropout(x)
                x = self.weight_call(x)
            elif step == "bn" and self.bn is not None:
                x = self.bn(x)
            elif step == "act" and self.activation is not None:
                x = self.activation(x)
        return x


class _GroupConvLayer(_OrderedLayer):
    """The arguments ConvLayer and DepthConvLayer share in the official configs, and their
    one check; each subclass builds its own convolutions (`_convs`)."""

    @typed
    def __init__(
        self,
        in_channels: Channels,
        out_channels: Channels,
        kernel_size: Size = 3,
        stride: Size = 1,
        dilation: Size = 1,
        groups: Channels = 1,
        bias: bool = False,
        has_shuffle: bool = False,
        use_bn: bool = True,
        act_func: ActFunc = "relu",
        dropout_rate: Rate = 0,
        ops_order: OpsOrder = "weight_bn_act",
    ) -> None:
        super().__init__(in_channels, out_channels, use_bn, act_func, dropout_rate, ops_order)
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.groups, self.bias, self.has_shuffle = groups, bias, has_shuffle
        _groups_divide(self, groups, in_channels, out_channels)
        self._convs(kernel_size // 2 * dilation)  # same padding

    def _convs(self, pad: int) -> None:
        raise NotImplementedError

    def _shuffled(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups) if self.has_shuffle and self.groups > 1 else x


@LAYERS.register()
class ConvLayer(_GroupConvLayer):
    """Plain (group) convolution with same padding and optional channel shuffle."""

    config_name = "ConvLayer"

    def _convs(self, pad: int) -> None:
        self.conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            pad,
            self.dilation,
            self.groups,
            self.bias,
        )

    def weight_call(self, x: torch.Tensor) -> torch.Tensor:
        return self._shuffled(self.conv(x))


@LAYERS.register()
class DepthConvLayer(_GroupConvLayer):
    """Separable convolution: depthwise k×k (optionally dilated) then pointwise 1×1."""

    config_name = "DepthConvLayer"

    def _convs(self, pad: int) -> None:
        cin = self.in_channels
        self.depth_conv = nn.Conv2d(
            cin, cin, self.kernel_size, self.stride, pad, self.dilation, groups=cin, bias=False
        )
        self.point_conv = nn.Conv2d(cin, self.out_channels, 1, groups=self.groups, bias=self.bias)

    def weight_call(self, x: torch.Tensor) -> torch.Tensor:
        return self._shuffled(self.point_conv(self.depth_conv(x)))


@LAYERS.register()
class PoolingLayer(_OrderedLayer):
    """Average or max pooling; same padding when stride is 1."""

    config_name = "PoolingLayer"

    @typed
    def __init__(
        self,
        in_channels: Channels,
        out_channels: Channels,
        pool_type: Literal["avg", "max"],
        kernel_size: Size = 2,
        stride: Size = 2,
        use_bn: bool = False,
        act_func: ActFunc = None,
        dropout_rate: Rate = 0,
        ops_order: OpsOrder = "weight_bn_act",
    ) -> None:
        super().__init__(in_channels, out_channels, use_bn, act_func, dropout_rate, ops_order)
        self.pool_type, self.kernel_size, self.stride = pool_type, kernel_size, stride
        pad = kernel_size // 2 if stride == 1 else 0
        if pool_type == "avg":
            self.pool = nn.AvgPool2d(kernel_size, stride, pad, count_include_pad=False)
        else:
            self.pool = nn.MaxPool2d(kernel_size, stride, pad)

    def weight_call(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@LAYERS.register()
class IdentityLayer(_OrderedLayer):
    """Identity, optionally with BN / activation around it."""

    config_name = "IdentityLayer"

    @typed
    def __init__(
        self,
        in_channels: Channels,
        out_channels: Channels,
        use_bn: bool = False,
        act_func: ActFunc = None,
        dropout_rate: Rate = 0,
        ops_order: OpsOrder = "weight_bn_act",
    ) -> None:
        super().__init__(in_channels, out_channels, use_bn, act_func, dropout_rate, ops_order)

    def weight_call(self, x: torch.Tensor) -> torch.Tensor:
        return x


@LAYERS.register()
class LinearLayer(_OrderedLayer):
    """Fully connected classifier layer (BN1d / dropout as configured)."""

    config_name = "LinearLayer"

    @typed
    def __init__(
        self,
        in_features: Channels,
        out_features: Channels,
        bias: bool = True,
        use_bn: bool = False,
        act_func: ActFunc = None,
        dropout_rate: Rate = 0,
        ops_order: OpsOrder = "weight_bn_act",
    ) -> None:
        super().__init__(in_features, out_features, use_bn, act_func, dropout_rate, ops_order)
        self.in_features, self.out_features, self.bias = in_features, out_features, bias
        self.linear = nn.Linear(in_features, out_features, bias)

    def _bn(self, channels: int) -> nn.Module:
        return nn.BatchNorm1d(channels)

    def _dropout(self, rate: float) -> nn.Module:
        return nn.Dropout(rate)

    def weight_call(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int, relu6: bool) -> nn.Sequential:
    """conv → bn (→ relu), named as the official modules name them, so their checkpoints
    (`…depth_conv.conv.weight`, `…depth_conv.bn.running_mean`) load as they are."""
    parts = [
        ("conv", nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)),
        ("bn", nn.BatchNorm2d(cout)),
    ]
    if relu6:
        parts.append(("relu", nn.ReLU6()))
    return nn.Sequential(OrderedDict(parts))


@LAYERS.register()
class MBInvertedConvLayer(Layer):
    """MobileNetV2 inverted bottleneck: 1×1 expand, k×k depthwise, 1×1 linear; BN + ReLU6.

    Expand ratio 1 drops the expansion conv, as in the official code.
    """

    config_name = "MBInvertedConvLayer"

    @typed
    def __init__(
        self,
        in_channels: Channels,
        out_channels: Channels,
        kernel_size: Size = 3,
        stride: Size = 1,
        expand_ratio: Size = 6,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.expand_ratio = kernel_size, stride, expand_ratio
        mid = round(in_channels * expand_ratio)
        if expand_ratio > 1:
            self.inverted_bottleneck = _conv_bn(in_channels, mid, 1, 1, 1, relu6=True)
        else:
            mid, self.inverted_bottleneck = in_channels, None
        self.depth_conv = _conv_bn(mid, mid, kernel_size, stride, mid, relu6=True)
        self.point_linear = _conv_bn(mid, out_channels, 1, 1, 1, relu6=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


@LAYERS.register()
class ZeroLayer(Layer):
    """The Zero op: outputs zeros, so a residual block reduces to its identity shortcut."""

    config_name = "ZeroLayer"

    @typed
    def __init__(self, stride: Size = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.stride
        return x.new_zeros(b, c, (h + s - 1) // s, (w + s - 1) // s)

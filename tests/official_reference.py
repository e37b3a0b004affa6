"""A reference forward of an official net.config over a state_dict in the official key layout.

Written for the tests from the official modules' semantics (MIT-licensed ProxylessNAS), with
plain `torch.nn.functional` and nothing from `nas_core`: it walks the config, takes each tensor
by the name the official modules give it (`blocks.1.mobile_inverted_conv.depth_conv.conv.weight`,
`…bn.running_mean`) and, while building, draws any tensor it does not have yet, so one forward
both defines the official layout and fills it with non-trivial weights and BN statistics (near
those of the drawing batch).
Eval mode only (dropout off, path and cell drop scale by 1 − rate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


class OfficialReference:
    """`forward(x)` of `config`; `state` holds the tensors, keyed as the official code keys."""

    def __init__(self, config: Mapping[str, Any], seed: int = 0) -> None:
        self.config = config
        self.state: dict[str, torch.Tensor] = {}
        self._gen = torch.Generator().manual_seed(seed)
        bn = config.get("bn") or {}
        self._eps2d = float(bn.get("eps", 1e-5))  # the net's `bn` sets BatchNorm2d only

    # ---- tensors by name: taken from `state`, drawn when absent ----

    def _tensor(self, key: str, shape: tuple[int, ...], kind: str) -> torch.Tensor:
        if key not in self.state:
            g = self._gen
            if kind == "conv":
                fan = math.prod(shape[1:])
                t = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan)
            elif kind == "gamma":
                t = 0.5 + torch.rand(shape, generator=g)
            else:  # beta, running mean, biases
                t = 0.1 * torch.randn(shape, generator=g)
            self.state[key] = t
        return self.state[key]

    def _bn(self, x: torch.Tensor, key: str, channels: int, eps: float) -> torch.Tensor:
        if f"{key}.running_var" not in self.state:  # near the drawing batch's own statistics,
            dims = [d for d in range(x.dim()) if d != 1]  # so a deep net's activations stay sane
            jitter = 0.8 + 0.45 * torch.rand(channels, generator=self._gen)
            self.state[f"{key}.running_var"] = x.var(dims, correction=0) * jitter + 0.01
            self.state[f"{key}.running_mean"] = x.mean(dims) + 0.05 * torch.randn(
                channels, generator=self._gen
            )
        return F.batch_norm(
            x,
            self.state[f"{key}.running_mean"],
            self.state[f"{key}.running_var"],
            self._tensor(f"{key}.weight", (channels,), "gamma"),
            self._tensor(f"{key}.bias", (channels,), "beta"),
            training=False,
            eps=eps,
        )

    def _conv(
        self,
        x: torch.Tensor,
        key: str,
        cout: int,
        k: int,
        stride: int = 1,
        pad: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> torch.Tensor:
        cin = x.shape[1]
        w = self._tensor(f"{key}.weight", (cout, cin // groups, k, k), "conv")
        b = self._tensor(f"{key}.bias", (cout,), "beta") if bias else None
        return F.conv2d(x, w, b, stride, pad, dilation, groups)

    # ---- layers (official `layers.py` semantics) ----

    def layer(self, x: torch.Tensor, c: Mapping[str, Any] | None, key: str) -> torch.Tensor:
        if c is None:
            return x
        name = c["name"]
        if name == "MBInvertedConvLayer":
            return self._mbconv(x, c, key)
        if name == "ZeroLayer":
            s = c["stride"]
            return x.new_zeros(x.shape[0], x.shape[1], x.shape[2] // s, x.shape[3] // s)
        return self._ordered(x, c, key)

    def _ordered(self, x: torch.Tensor, c: Mapping[str, Any], key: str) -> torch.Tensor:
        name, order = c["name"], c.get("ops_order", "weight_bn_act").split("_")
        linear = name == "LinearLayer"
        cin = c["in_features"] if linear else c["in_channels"]
        cout = c["out_features"] if linear else c["out_channels"]
        bn_channels = cin if order.index("bn") < order.index("weight") else cout
        for step in order:
            if step == "weight":
                x = self._weight(x, c, key)
            elif step == "bn" and c.get("use_bn", name in ("ConvLayer", "DepthConvLayer")):
                eps = 1e-5 if linear else self._eps2d  # BatchNorm1d keeps torch's default
                x = self._bn(x, f"{key}.bn", bn_channels, eps)
            elif step == "act" and c.get("act_func") is not None:
                x = {"relu": F.relu, "relu6": F.relu6, "tanh": torch.tanh}.get(
                    c["act_func"], torch.sigmoid
                )(x)
        return x

    def _weight(self, x: torch.Tensor, c: Mapping[str, Any], key: str) -> torch.Tensor:
        name = c["name"]
        if name == "LinearLayer":
            w = self._tensor(f"{key}.linear.weight", (c["out_features"], c["in_features"]), "conv")
            b = (
                self._tensor(f"{key}.linear.bias", (c["out_features"],), "beta")
                if c.get("bias", True)
                else None
            )
            return F.linear(x, w, b)
        if name == "IdentityLayer":
            return x
        k, stride = c.get("kernel_size", 3), c.get("stride", 1)
        if name == "PoolingLayer":
            pad = k // 2 if stride == 1 else 0
            if c["pool_type"] == "avg":
                return F.avg_pool2d(x, k, stride, pad, count_include_pad=False)
            return F.max_pool2d(x, k, stride, pad)
        dilation, groups = c.get("dilation", 1), c.get("groups", 1)
        pad = k // 2 * dilation
        if name == "ConvLayer":
            x = self._conv(
                x, f"{key}.conv", c["out_channels"], k, stride, pad, dilation, groups,
                c.get("bias", False),
            )  # fmt: skip
        else:  # DepthConvLayer
            cin = c["in_channels"]
            x = self._conv(x, f"{key}.depth_conv", cin, k, stride, pad, dilation, cin)
            x = self._conv(
                x,
                f"{key}.point_conv",
                c["out_channels"],
                1,
                groups=groups,
                bias=c.get("bias", False),
            )
        if c.get("has_shuffle") and groups > 1:
            b, ch, h, w = x.shape
            x = x.view(b, groups, ch // groups, h, w).transpose(1, 2).reshape(b, ch, h, w)
        return x

    def _mbconv(self, x: torch.Tensor, c: Mapping[str, Any], key: str) -> torch.Tensor:
        cin, k, e = c["in_channels"], c["kernel_size"], c["expand_ratio"]
        mid = round(cin * e) if e > 1 else cin
        if e > 1:
            x = self._conv(x, f"{key}.inverted_bottleneck.conv", mid, 1)
            x = F.relu6(self._bn(x, f"{key}.inverted_bottleneck.bn", mid, self._eps2d))
        x = self._conv(x, f"{key}.depth_conv.conv", mid, k, c["stride"], k // 2, groups=mid)
        x = F.relu6(self._bn(x, f"{key}.depth_conv.bn", mid, self._eps2d))
        x = self._conv(x, f"{key}.point_linear.conv", c["out_channels"], 1)
        return self._bn(x, f"{key}.point_linear.bn", c["out_channels"], self._eps2d)

    # ---- nets (official `nas_modules.py` and `cifar_modules.py` semantics) ----

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c["name"] == "ProxylessNASNets":
            x = self.layer(x, c["first_conv"], "first_conv")
            for i, block in enumerate(c["blocks"]):
                op, key = block["mobile_inverted_conv"], f"blocks.{i}"
                if op["name"] == "ZeroLayer":
                    continue
                y = self.layer(x, op, f"{key}.mobile_inverted_conv")
                shortcut = block.get("shortcut")
                x = y if shortcut is None else y + self.layer(x, shortcut, f"{key}.shortcut")
            x = self.layer(x, c.get("feature_mix_layer"), "feature_mix_layer")
            x = x.mean((2, 3))
        else:  # PyramidTreeNet
            for i, block in enumerate(c["blocks"]):
                key = f"blocks.{i}"
                if block["name"] == "TransitionBlock":
                    for j, layer in enumerate(block["layers"]):
                        x = self.layer(x, layer, f"{key}.layers.{j}")
                else:
                    x = self._residual_tree(x, block, key)
            x = torch.flatten(x, 1)
        return self.layer(x, c["classifier"], "classifier")

    def _residual_tree(self, x: torch.Tensor, b: Mapping[str, Any], key: str) -> torch.Tensor:
        skip = self.layer(x, b["shortcut"], f"{key}.shortcut")
        x = self.layer(x, b.get("in_bottle"), f"{key}.in_bottle")
        x = self._node(x, b["cell"], f"{key}.cell")
        x = self.layer(x, b.get("out_bottle"), f"{key}.out_bottle")
        if b.get("final_bn", True):
            x = self._bn(x, f"{key}.final_bn", x.shape[1], self._eps2d)
        x = x * (1 - b.get("cell_drop_rate", 0))
        if x.shape[1] > skip.shape[1]:
            skip = F.pad(skip, (0, 0, 0, 0, 0, x.shape[1] - skip.shape[1]))
        return skip + x

    def _node(self, x: torch.Tensor, n: Mapping[str, Any], key: str) -> torch.Tensor:
        count = len(n["edges"])

        def parts(total: int) -> list[int]:  # near-equal channel groups, earlier ones larger
            return [total // count + (1 if i < total % count else 0) for i in range(count)]

        inputs = list(torch.split(x, parts(x.shape[1]), 1)) if n["split_type"] == "split" else None
        outs = []
        for i, (edge, child) in enumerate(zip(n["edges"], n["child_nodes"], strict=True)):
            y = self.layer(inputs[i] if inputs else x, edge, f"{key}.edges.{i}")
            z = y if child is None else self._node(y, child, f"{key}.child_nodes.{i}")
            if n.get("has_branch_bn"):
                z = self._bn(z, f"{key}.branch_bns.{i}", z.shape[1], self._eps2d) + y
            outs.append(z * (1 - n.get("path_drop_rate", 0)))
        if n["merge_type"] == "concat":
            return torch.cat(outs, 1)
        return outs[0] if len(outs) == 1 else torch.stack(outs).sum(0)

"""Latency-table keys: the official ProxylessNAS scheme, extended for the tree space.

Official keys (as in `mobile_trim.yaml`):
`expanded_conv-input:HxWxC-output:HxWxC-expand:e-kernel:k-stride:s-idskip:b`,
`Conv-input:…-output:…` (first conv), `Conv_1-input:…-output:…` (feature mix),
`Logits-input:HxWxC-output:N` (pool + classifier). The tree space adds `tree_stem`,
`tree_block` (a residual block with identity edges: every fixed part of it), `tree_edge`
(one candidate edge) and `tree_head` (BN-ReLU-pool + classifier) in the same `kind-field:value`
form, so a key is its own signature and `parse_key` recovers the fields.
"""

from __future__ import annotations

from nas_core.errors import ProxylessError


def _hwc(size: int, channels: int) -> str:
    return f"{size}x{size}x{channels}"


def mbconv_key(
    in_size: int,
    cin: int,
    out_size: int,
    cout: int,
    expand: int,
    kernel: int,
    stride: int,
    idskip: bool,
) -> str:
    return (
        f"expanded_conv-input:{_hwc(in_size, cin)}-output:{_hwc(out_size, cout)}"
        f"-expand:{expand}-kernel:{kernel}-stride:{stride}-idskip:{int(idskip)}"
    )


def conv_key(kind: str, in_size: int, cin: int, out_size: int, cout: int) -> str:
    """`Conv` (first conv, 3×3 stride 2) or `Conv_1` (1×1 feature mix)."""
    return f"{kind}-input:{_hwc(in_size, cin)}-output:{_hwc(out_size, cout)}"


def logits_key(size: int, channels: int, classes: int) -> str:
    return f"Logits-input:{_hwc(size, channels)}-output:{classes}"


def tree_stem_key(size: int) -> str:
    return f"tree_stem-input:{_hwc(size, 3)}-output:{_hwc(size, 16)}"


def tree_block_key(in_size: int, cin: int, width: int, stride: int) -> str:
    out = -(-in_size // stride)
    return (
        f"tree_block-input:{_hwc(in_size, cin)}-output:{_hwc(out, 4 * width)}"
        f"-width:{width}-stride:{stride}"
    )


def tree_edge_key(op: str, size: int, channels: int) -> str:
    return f"tree_edge-op:{op}-input:{_hwc(size, channels)}-output:{_hwc(size, channels)}-stride:1"


def tree_head_key(size: int, channels: int, classes: int) -> str:
    return f"tree_head-input:{_hwc(size, channels)}-output:{classes}"


KINDS = (
    "expanded_conv",
    "Conv",
    "Conv_1",
    "Logits",
    "tree_stem",
    "tree_block",
    "tree_edge",
    "tree_head",
)


def parse_key(key: str) -> dict[str, str]:
    """`kind-a:1-b:2` → {"kind": "kind", "a": "1", "b": "2"}; a malformed key is an error."""
    if not isinstance(key, str) or "-" not in key:
        raise ProxylessError(f"malformed latency key {key!r}")
    kind, *parts = key.split("-")
    if kind not in KINDS:
        raise ProxylessError(
            f"latency key {key!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})"
        )
    fields = {"kind": kind}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep or not name or not value:
            raise ProxylessError(f"malformed latency key {key!r} (part {part!r})")
        fields[name] = value
    if "input" not in fields or "output" not in fields:
        raise ProxylessError(f"latency key {key!r} needs input and output")
    return fields


def parse_shape(text: str) -> tuple[int, ...]:
    """'56x56x24' → (56, 56, 24); '1000' → (1000,)."""
    try:
        return tuple(int(v) for v in text.split("x"))
    except ValueError:
        raise ProxylessError(f"malformed shape {text!r} in a latency key") from None

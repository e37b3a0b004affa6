"""A look inside an architecture: α as a heat-map with per-layer entropies, and the op each
layer chose as a table and a drawing.

The single search, the sweep and `proxyless arch stats` all show architectures through these
functions. Figures are matplotlib's (imported when one is drawn, with the Agg backend).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nas_core.arch_state import ArchState
from nas_core.ops import ZERO, OpName

if TYPE_CHECKING:
    from nas_core.architecture import Architecture
    from nas_core.latency.table import LatencyTable

ALPHA_KEY = "alpha"  # a search report's α (ArchState JSON), per epoch and at the end
KERNEL_COLOURS = {3: "#4c9be8", 5: "#f5a623", 7: "#d0021b"}  # the paper's figure's idea


def alpha_report(state: ArchState) -> dict[str, str]:
    """The α of a search epoch as one report entry (a JSON string, as Tune/Train carry it)."""
    return {ALPHA_KEY: json.dumps(state.to_config())}


def log_alpha(writer: Any, state: ArchState, step: int) -> None:
    """Per-layer entropies and the α heat-map into a TensorBoard `SummaryWriter`."""
    import matplotlib.pyplot as plt

    for name, entropy in zip(state.layer_names, state.entropy().tolist(), strict=True):
        writer.add_scalar(f"arch_entropy/{name}", entropy, step)
    figure = alpha_figure(state, f"softmax(α), epoch {step}")
    writer.add_figure("arch/probabilities", figure, step, close=False)
    plt.close(figure)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def alpha_figure(state: ArchState, title: str = "softmax(α)") -> Any:
    """Layers × candidate ops, coloured by probability (blank where a layer lacks the op),
    the chosen op outlined and each layer's entropy on the right."""
    import numpy as np

    plt = _pyplot()
    ops = list(dict.fromkeys(op for cands in state.candidates for op in cands))
    grid = np.full((len(state), len(ops)), np.nan)
    for i, (cands, probs) in enumerate(zip(state.candidates, state.all_probs(), strict=True)):
        for op, p in zip(cands, probs.tolist(), strict=True):
            grid[i, ops.index(op)] = p
    width, height = 2.8 + 0.75 * len(ops), 1.4 + 0.28 * len(state)
    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, chosen in enumerate(state.argmax()):
        j = ops.index(chosen)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
    for i, entropy in enumerate(state.entropy().tolist()):
        ax.text(len(ops) - 0.4, i, f"H={abs(entropy):.2f}", va="center", fontsize=7)  # not -0
    ax.set_xticks(range(len(ops)), ops, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(state)), state.layer_names, fontsize=7)
    ax.set_xlim(-0.5, len(ops) + 0.6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="probability")
    # fixed margins, not tight_layout: a sweep's driver draws one of these per search epoch
    name = max(len(n) for n in state.layer_names)
    fig.subplots_adjust(left=(0.3 + 0.065 * name) / width, right=0.9, bottom=1.0 / height)
    return fig


def layer_rows(arch: Architecture, table: LatencyTable | None = None) -> list[dict[str, Any]]:
    """One row per searchable layer: where it is, its shape, the op it chose and, with a
    table, that op's latency and share of the whole net's."""
    from nas_core.latency.predictor import architecture_latency

    specs = arch.space.layer_specs()
    rows = [
        {
            "layer": spec.name,
            "input": spec.input_size,
            "in_channels": spec.in_channels,
            "out_channels": spec.out_channels,
            "stride": spec.stride,
            "op": op,
        }
        for spec, op in zip(specs, arch.ops, strict=True)
    ]
    if table is not None:
        total = architecture_latency(arch, table)  # checks every key first
        layout = arch.space.latency_layout()
        for row, spec, keys in zip(rows, specs, layout.layers, strict=True):
            key = keys[spec.candidates.index(row["op"])]
            ms = 0.0 if key is None else table.scale * table.mean(key)
            row.update(latency_ms=ms, latency_share=ms / total if total > 0 else None)
    return rows


def architecture_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-layer table as Markdown: layer, resolution, channels, stride, op and (when
    priced) latency and share."""
    priced = "latency_ms" in rows[0] if rows else False
    head = ["layer", "input", "channels", "stride", "op"] + (["latency (ms)", "share"] * priced)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["layer"],
            f"{r['input']}²",
            f"{r['in_channels']}→{r['out_channels']}",
            str(r["stride"]),
            r["op"],
        ]
        if priced:
            share = r["latency_share"]
            cells += [f"{r['latency_ms']:.3f}", "–" if share is None else f"{share:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def architecture_figure(rows: Sequence[Mapping[str, Any]], title: str) -> Any:
    """The chosen op of every layer as a row of blocks, as the paper draws its nets: colour
    by kernel size, height by expand ratio, thin grey for skip; input size below each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * len(rows), 2.6), dpi=100)
    for x, r in enumerate(rows):
        op = OpName.parse(r["op"])
        skip = op.family in (ZERO, "identity")
        height = 0.12 if skip else 0.3 + 0.7 * min(op.param or 3, 6) / 6
        colour = "0.75" if skip else KERNEL_COLOURS.get(op.kernel or 0, "0.45")
        ax.add_patch(plt.Rectangle((x - 0.4, 0), 0.8, height, color=colour))
        label = "skip" if skip else _short(op)
        ax.text(x, height + 0.04, label, rotation=90, ha="center", va="bottom", fontsize=7)
        ax.text(x, -0.08, str(r["input"]), ha="center", va="top", fontsize=6, color="0.35")
        if r["stride"] == 2:
            ax.axvline(x - 0.5, color="0.6", lw=0.8, ls="--")
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylim(-0.3, 2.0)  # room above the labels for the legend
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KERNEL_COLOURS.values()]
    names = [f"{k}x{k}" for k in KERNEL_COLOURS]
    ax.legend(handles, names, loc="upper right", fontsize=6, ncols=3, frameon=False)
    ax.set_title(f"{title}   (below: input size; dashed: stride 2)", fontsize=8)
    fig.tight_layout()
    return fig


def _short(op: OpName) -> str:
    """`MB6 5x5` for 5x5_MBConv6, as the paper labels blocks; other ops by their name."""
    kernel = f" {op.kernel}x{op.kernel}" if op.kernel else ""
    if op.family == "MBConv":
        return f"MB{op.param}{kernel}"
    return f"{op.family}{'' if op.param is None else op.param}{kernel}"

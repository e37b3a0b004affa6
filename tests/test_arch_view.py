"""Looking inside architectures: the α heat-map, the per-layer table and the drawing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas_core.arch_state import ArchState
from nas_core.arch_view import (
    ALPHA_KEY,
    alpha_figure,
    alpha_report,
    architecture_figure,
    architecture_markdown,
    layer_rows,
    log_alpha,
)
from nas_core.architecture import Architecture
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.synthetic import synthetic_table
from nas_core.spaces import create_space


def _space():
    return create_space("mobilenet", B=1, F=0.5, resolution=32, num_classes=10)


def _state(space) -> ArchState:
    specs = space.layer_specs()
    state = ArchState([s.name for s in specs], [s.candidates for s in specs])
    with torch.no_grad():
        for i, a in enumerate(state.alphas):
            a[i % len(a)] = 3.0  # layer i prefers candidate i mod n
    return state


def test_the_heat_map_shows_every_layer_and_op_and_marks_the_choice() -> None:
    space = _space()
    state = _state(space)
    figure = alpha_figure(state)
    ax = figure.axes[0]
    ops = list(dict.fromkeys(op for c in state.candidates for op in c))
    assert [t.get_text() for t in ax.get_yticklabels()] == state.layer_names
    assert [t.get_text() for t in ax.get_xticklabels()] == ops
    grid = ax.images[0].get_array()
    assert grid.shape == (len(state), len(ops))
    for i, probs in enumerate(state.all_probs()):
        for op, p in zip(state.candidates[i], probs.tolist(), strict=True):
            assert grid[i, ops.index(op)] == pytest.approx(p)
    outlined = [(round(r.get_x() + 0.5), round(r.get_y() + 0.5)) for r in ax.patches]
    assert outlined == [(ops.index(op), i) for i, op in enumerate(state.argmax())]
    entropies = [t.get_text() for t in ax.texts]
    assert entropies == [f"H={abs(e):.2f}" for e in state.entropy().tolist()]


def test_alpha_travels_as_json_and_lands_in_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    state = _state(_space())
    report = alpha_report(state)
    back = ArchState.from_config(json.loads(report[ALPHA_KEY]))
    assert back.argmax() == state.argmax()
    writer = SummaryWriter(str(tmp_path))
    log_alpha(writer, back, 3)
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["arch/probabilities"]
    assert acc.Images("arch/probabilities")[0].step == 3
    scalars = acc.Tags()["scalars"]
    assert sorted(scalars) == sorted(f"arch_entropy/{n}" for n in state.layer_names)


def test_the_layer_table_prices_each_choice_on_the_table() -> None:
    space = _space()
    table = synthetic_table(space)
    arch = Architecture(space, tuple(_state(space).argmax()))
    rows = layer_rows(arch, table)
    assert [r["op"] for r in rows] == list(arch.ops)
    assert [r["layer"] for r in rows] == [s.name for s in space.layer_specs()]
    total = architecture_latency(arch, table)
    searchable = sum(r["latency_ms"] for r in rows)
    assert 0 < searchable < total  # the fixed stem and head take the rest
    assert sum(r["latency_share"] for r in rows) == pytest.approx(searchable / total)
    md = architecture_markdown(rows)
    assert md.splitlines()[0].startswith("| layer | input | channels | stride | op | latency")
    assert len(md.splitlines()) == 2 + len(rows)
    assert "latency" not in architecture_markdown(layer_rows(arch))  # no table, no prices


def test_the_drawing_has_a_block_per_layer_coloured_by_kernel() -> None:
    from matplotlib.colors import to_hex

    from nas_core.arch_view import KERNEL_COLOURS

    space = _space()
    arch = Architecture(space, tuple(_state(space).argmax()))
    rows = layer_rows(arch)
    ax = architecture_figure(rows, "net").axes[0]
    blocks = [p for p in ax.patches if p.get_width() == pytest.approx(0.8)]
    assert len(blocks) == len(rows)
    for block, op in zip(blocks, arch.ops, strict=True):
        kernel = int(op[0]) if op[0].isdigit() else None
        want = KERNEL_COLOURS[kernel] if kernel else to_hex("0.75")
        assert to_hex(block.get_facecolor()) == want
    labels = [t.get_text() for t in ax.texts if t.get_rotation() == 90]
    assert labels == [
        "skip" if op in ("zero", "identity") else f"MB{op[-1]} {op[:3]}" for op in arch.ops
    ]  # as the paper labels its blocks

"""What a sweep shows its user: the front as a printed and Markdown table, a figure, TensorBoard.

Everything here is derived from the results rows, so `proxyless pareto` can redraw it at any
time; the derived TensorBoard folders (`hparams/`, `pareto/`) are rewritten, not appended to.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.fronts import front_points, net_name
from orchestrator.versus_random import versus_text


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "–"
    return format(v, spec) if spec else str(v)


def _label(p: Mapping[str, Any]) -> str:
    parts = [f"λ₂={_fmt(p.get('lambda2'), 'g')}"]
    if p.get("B") is not None:
        parts.append(f"B={_fmt(p['B'], 'g')}")
    if p.get("F") is not None:
        parts.append(f"F={_fmt(p['F'], 'g')}")
    return " ".join(parts)


def _spread(p: Mapping[str, Any], column: str, spec: str) -> str:
    """A point's mean, with ± its spread across seeds when it has one."""
    std = p.get(f"{column}_std")
    return _fmt(p.get(column), spec) + ("" if std is None else f" ± {std:{spec}}")


HEADER = (
    "net",
    "λ₂",
    "B",
    "F",
    "test acc",
    "latency table (ms)",
    "latency here (ms)",
    "params",
    "MACs",
    "within noise of",
)


def _cells(p: Mapping[str, Any]) -> list[str]:
    return [
        ", ".join(p["nets"]),
        _fmt(p.get("lambda2"), "g"),
        _fmt(p.get("B"), "g"),
        _fmt(p.get("F"), "g"),
        _spread(p, "test_accuracy", ".4f"),
        _spread(p, "latency_table_ms", ".3f"),
        _spread(p, "latency_measured_ms", ".3f"),
        _fmt(p.get("params"), ","),
        _fmt(p.get("macs"), ","),
        ", ".join(p.get("within_noise") or ()) or "–",
    ]


def front_caption(device: str, stats: Mapping[str, Any], column: str) -> str:
    """One device's front in a sentence: its size, hypervolume, reference point and, with
    seeds, what a point is."""
    ref = stats["reference"]
    seeds = max(len(p["nets"]) for p in stats["points"])
    averaged = f", each the mean ± spread of {seeds} seeds" if seeds > 1 else ""
    return (
        f"{device}: {stats['front']} of {stats['settings']} settings on the front{averaged} "
        f"({stats['trials']} retrained nets; latency: {column}); hypervolume "
        f"{stats['hypervolume']:.4g} against accuracy {ref['accuracy']:g}, latency "
        f"{ref['latency_ms']:.4g} ms ({ref['from']})."
    )


NOISE_NOTE = (
    "A net named under *within noise of* differs in test accuracy from that front neighbour "
    "by less than one binomial standard error of the test set: their order is not measured."
)


def matrix_markdown(summary: Mapping[str, Any]) -> str:
    """The cross-device latency matrix: rows, the device a net was searched for (its most
    accurate front point); columns, the device it runs on (table latency, ms)."""
    matrix = summary.get("latency_matrix") or {}
    columns = sorted({d for cell in matrix.values() for d in cell["latency_ms"]})
    if not columns:
        return ""
    lines = [
        "| searched for | net | test acc | " + " | ".join(f"on {c} (ms)" for c in columns) + " |",
        "|" + "---|" * (3 + len(columns)),
    ]
    for device, cell in matrix.items():
        ms = [_fmt(cell["latency_ms"].get(c), ".3f") for c in columns]
        lines.append(
            f"| {device} | {cell['net']} | {cell['test_accuracy']:.4f} | " + " | ".join(ms) + " |"
        )
    return "\n".join(lines) + "\n"


def _noisy(summary: Mapping[str, Any]) -> bool:
    return any(p.get("within_noise") for _, _, front in front_points(summary) for p in front)


def front_markdown(summary: Mapping[str, Any]) -> str:
    """One Markdown table per device (fastest first), each with its hypervolume, then the
    cross-device latency matrix."""
    lines: list[str] = []
    for device, stats, front in front_points(summary):
        lines += [
            f"### {device}",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER),
            *("| " + " | ".join(_cells(p)) + " |" for p in front),
            "",
            front_caption(device, stats, summary["latency"]),
            "",
        ]
        if "search_vs_random" in stats:
            lines += [versus_text(device, stats["search_vs_random"]), ""]
    if _noisy(summary):
        lines += [NOISE_NOTE, ""]
    matrix = matrix_markdown(summary)
    if matrix:
        lines += ["### Latency across devices", "", matrix]
    return "\n".join(lines)


def front_text(summary: Mapping[str, Any]) -> str:
    """One aligned plain-text table per device for the terminal, each under its caption."""
    blocks = []
    for device, stats, front in front_points(summary):
        table = [list(HEADER), *(_cells(p) for p in front)]
        widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        versus = stats.get("search_vs_random")
        if versus is not None:
            lines.append(versus_text(device, versus))
        blocks.append("\n".join([front_caption(device, stats, summary["latency"]), *lines]))
    if _noisy(summary):
        blocks.append(NOISE_NOTE.replace("*", ""))
    if len(summary["devices"]) > 1 and matrix_markdown(summary):
        blocks.append("Latency across devices:\n" + matrix_markdown(summary).rstrip())
    return "\n\n".join(blocks)


def draw_front(summary: Mapping[str, Any]):
    """A matplotlib figure, one panel per device: every setting (the mean of its seeds, with
    error bars for their spread), the front highlighted, joined and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = summary["latency"]
    devices = list(summary["devices"]) or ["unknown"]
    fig, axes = plt.subplots(
        1, len(devices), figsize=(7 * len(devices), 4.5), dpi=110, squeeze=False
    )
    for ax, device in zip(axes[0], devices, strict=True):
        stats = summary["devices"].get(device)
        _draw_panel(ax, stats["points"] if stats else [], column)
        versus = (stats or {}).get("search_vs_random")
        if versus is not None:  # the random baseline: grey crosses, never on the front
            nets = versus["random_nets"]
            ax.scatter(
                [n[column] for n in nets],
                [n["test_accuracy"] for n in nets],
                marker="x",
                c="0.45",
                zorder=2,
                label=f"random ({len(nets)})",
            )
            ax.legend(loc="lower right")
        hv = f", hypervolume {stats['hypervolume']:.4g}" if stats else ""
        ax.set_title(f"{device}{hv}", fontsize=9)
    fig.suptitle("accuracy / latency front per device")
    fig.tight_layout()
    return fig


def _draw_panel(ax: Any, points: Sequence[Mapping[str, Any]], column: str) -> None:
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p[column])
    ax.step(
        [p[column] for p in front],
        [p["test_accuracy"] for p in front],
        where="post",
        c="tab:red",
        alpha=0.6,
    )
    dominated = [p for p in points if not p["pareto"]]
    for group, colour, label in (
        (front, "tab:red", "Pareto front"),
        (dominated, "0.6", "dominated"),
    ):
        if group:  # error bars: the spread across seeds (none with one seed)
            ax.errorbar(
                [p[column] for p in group],
                [p["test_accuracy"] for p in group],
                xerr=[p.get(f"{column}_std") or 0.0 for p in group],
                yerr=[p.get("test_accuracy_std") or 0.0 for p in group],
                fmt="o",
                color=colour,
                elinewidth=0.8,
                capsize=2,
                zorder=3,
                label=label,
            )
    # every point labelled; settings at the same place (the same architecture, say) share
    # one marker and one label naming all of them, so none hides behind another
    at: dict[tuple[float, float], list[Mapping[str, Any]]] = {}
    for p in points:
        at.setdefault((p[column], p["test_accuracy"]), []).append(p)
    for (x, y), same in at.items():
        names = ", ".join(n for p in same for n in p["nets"])
        text = f"{names}\n{_label(same[0])}" if same[0]["pareto"] else names
        ax.annotate(
            text + (f" (×{len(same)})" if len(same) > 1 else ""),
            (x, y),
            textcoords="offset points",
            xytext=(4, -10 if same[0]["pareto"] else 4),
            fontsize=7 if same[0]["pareto"] else 6,
            color="black" if same[0]["pareto"] else "0.4",
        )
    where = "latency table" if column == "latency_table_ms" else "measured here"
    ax.set_xlabel(f"latency (ms, {where})")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _hparams(r: Mapping[str, Any]) -> dict[str, Any]:
    h: dict[str, Any] = {"lambda2": r.get("lambda2") or 0.0}
    for k in ("B", "F", "target_ms", "seed"):
        if r.get(k) is not None:
            h[k] = r[k]
    h["device"] = r.get("device") or "unknown"
    h["strategy"] = r.get("strategy") or "unknown"  # "random" for a baseline net
    return h


def write_tensorboard(
    tb_dir: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], figure: Any
) -> None:
    """HParams (one run per retrained net), the front figure and its Markdown table."""
    from torch.utils.tensorboard import SummaryWriter

    for sub in ("hparams", "pareto"):
        shutil.rmtree(tb_dir / sub, ignore_errors=True)
    writer = SummaryWriter(str(tb_dir / "hparams"))
    searches = {r["trial_id"]: r for r in rows if r["kind"] == "search"}
    nan = float("nan")
    for r in rows:
        if r["kind"] == "search" or r["status"] != "done":
            continue
        search = searches.get(r.get("search_trial_id"), {})
        metrics = {
            "hparam/test_accuracy": r["test_accuracy"],
            "hparam/latency_table_ms": r.get("latency_table_ms") or nan,
            "hparam/latency_measured_ms": r.get("latency_measured_ms") or nan,
            "hparam/params_m": (r.get("params") or 0) / 1e6,
            "hparam/retrain_valid_accuracy": r.get("valid_accuracy") or nan,
            "hparam/search_valid_accuracy": search.get("valid_accuracy") or nan,
            "hparam/pareto": float(bool(r["pareto"])),
        }
        writer.add_hparams(_hparams(r), metrics, run_name=net_name(r))
    writer.close()
    writer = SummaryWriter(str(tb_dir / "pareto"))
    writer.add_figure("pareto/front", figure, close=False)
    writer.add_text("pareto/table", front_markdown(summary))
    for device, stats in summary["devices"].items():
        writer.add_scalar(f"pareto/hypervolume/{device}", stats["hypervolume"], 0)
    writer.close()


def publish(run_dir: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
    """Everything that states the front, written together from the same rows: the `pareto`
    flags in results.parquet, summary.json and (when there is a front) its renderings."""
    import json

    from nas_core.io import atomic_write_text
    from orchestrator.results import write_results

    write_results(run_dir / "results.parquet", rows)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if summary["trials"]:
        render(run_dir, rows, summary)


def render(run_dir: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
    """pareto.png, pareto.md and the TensorBoard front, from the rows and their summary."""
    import matplotlib.pyplot as plt

    from nas_core.io import atomic_output, atomic_write_text

    figure = draw_front(summary)
    with atomic_output(run_dir / "pareto.png") as tmp:
        figure.savefig(tmp, format="png")
    atomic_write_text(run_dir / "pareto.md", front_markdown(summary))
    write_tensorboard(run_dir / "tensorboard", rows, summary, figure)
    plt.close(figure)

"""Every input the tool reads × the bad forms tried × what the user gets (docs/reliability.md).

Each case writes one bad input, runs the `proxyless` command that reads it and checks: exit
code 2, one line on stderr starting `proxyless: error:`, the file named in it (where there is a
file) and the field or fault named. `test_the_document_lists_every_case` keeps
docs/reliability.md equal to this list; regenerate it with `python -m tests.test_reliability`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
SPACE = {"name": "mobilenet", "B": 1, "F": 0.5, "resolution": 32, "num_classes": 10}


def _arch(tmp: Path, change: dict | None = None, ops: list | None = None) -> dict:
    from nas_core.spaces import SearchSpace

    space = SearchSpace.from_config(SPACE)
    chosen = ops if ops is not None else [s.candidates[0] for s in space.layer_specs()]
    return {"space": {**space.to_config(), **(change or {})}, "ops": chosen}


def _net_config(tmp: Path, path: list, value: object) -> list[str]:
    """`proxyless arch stats` on the net.config of `_arch` with the value at `path` replaced."""
    from nas_core.architecture import Architecture

    config = Architecture.from_config(_arch(tmp)).net_config()
    parent = config
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return ["arch", "stats", str(_write(tmp, "n.config", config))]


def _write(tmp: Path, name: str, content: str | bytes | dict | list) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif name.endswith(".json") or name.endswith(".config"):
        path.write_text(json.dumps(content))
    else:
        path.write_text(yaml.safe_dump(content))
    return path


def _table(tmp: Path, name: str = "t.yaml", **override) -> Path:
    """A small valid YAML latency table for SPACE, optionally with edited entries."""
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.spaces import SearchSpace

    data = synthetic_table(SearchSpace.from_config(SPACE)).to_yaml_dict()
    data.update(override)
    return _write(tmp, name, data)


def _checkpoint(tmp: Path, payload: bytes | None = None) -> Path:
    out = tmp / "ckpt"
    out.mkdir(exist_ok=True)
    path = out / "checkpoint.pt"
    if payload is None:
        torch.save({"epoch": 1}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # cut in the middle
    else:
        path.write_bytes(payload)
    return out


class _Exploit:
    """Unpickling this calls os.system: what a hostile checkpoint would carry."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/proxyless-pwned",))


def _pickle_bomb() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # torch.save's zip layout with a hostile data.pkl
        z.writestr("archive/data.pkl", pickle.dumps({"weights": _Exploit()}))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    input: str
    form: str
    argv: Callable[[Path], list[str]]
    expect: str  # a fragment the one-line message must contain
    names_file: bool = True  # the message names the offending file

    @property
    def id(self) -> str:
        return f"{self.input} / {self.form}".replace(" ", "-")


def _sweep(tmp: Path, spec) -> list[str]:
    path = spec if isinstance(spec, Path) else _write(tmp, "sweep.yaml", spec)
    return ["sweep", "--config", str(path), "--storage-path", str(tmp / "runs")]


def _search(tmp: Path, content) -> list[str]:
    return ["search", "--config", str(_write(tmp, "search.yaml", content))]


SWEEP = "sweep YAML"
SEARCH = "search YAML"
ARCH = "architecture JSON"
NETCFG = "official net.config"
LUT_Y = "latency table (YAML)"
LUT_P = "latency table (Parquet)"
CKPT = "checkpoint"
DATA = "dataset folder"
ARGS = "CLI arguments"
RESULTS = "results.parquet"

CASES: list[Case] = [
    # ---- sweep YAML ----
    Case(SWEEP, "missing file", lambda t: _sweep(t, t / "none.yaml"), "no such file"),
    Case(SWEEP, "empty", lambda t: _sweep(t, _write(t, "s.yaml", "\n")), "file is empty"),
    Case(
        SWEEP,
        "truncated",
        lambda t: _sweep(t, _write(t, "s.yaml", "grid: {lambda2: [0, 1")),
        "invalid YAML",
    ),
    Case(SWEEP, "not a mapping", lambda t: _sweep(t, [1, 2]), "must be a mapping"),
    Case(SWEEP, "unknown key", lambda t: _sweep(t, {"epochs": 3}), "epochs: unknown key"),
    Case(SWEEP, "unknown grid axis", lambda t: _sweep(t, {"grid": {"depth": [1]}}), "depth"),
    Case(
        SWEEP,
        "wrong type",
        lambda t: _sweep(t, {"search": {"epochs": "four"}}),
        "search.epochs: must be an integer",
    ),
    Case(
        SWEEP,
        "out of range",
        lambda t: _sweep(t, {"grid": {"lambda2": [0, -1]}}),
        "strategy.lambda2",
    ),
    Case(
        SWEEP,
        "NaN",
        lambda t: _sweep(t, _write(t, "s.yaml", "grid: {lambda2: [.nan]}\n")),
        "strategy.lambda2",
    ),
    Case(
        SWEEP,
        "inf",
        lambda t: _sweep(t, _write(t, "s.yaml", "grid: {target_ms: [.inf]}\n")),
        "strategy.target_ms",
    ),
    Case(
        SWEEP,
        "impossible resources",
        lambda t: _sweep(t, {"resources": {"gpus_per_worker": 1}}),
        "but device is cpu",
    ),
    Case(
        SWEEP,
        "two ranks sharing a GPU",
        lambda t: _sweep(
            t, {"device": "cuda", "resources": {"workers": 2, "gpus_per_worker": 0.5}}
        ),
        "whole number of GPUs",
    ),
    Case(SWEEP, "unknown precision", lambda t: _sweep(t, {"amp": "fp8"}), "amp: must be one of"),
    Case(
        SWEEP,
        "no checkpoint kept",
        lambda t: _sweep(t, {"resources": {"checkpoints_to_keep": 0}}),
        "resources.checkpoints_to_keep",
    ),
    Case(
        SWEEP,
        "CPUs asked as a node resource",
        lambda t: _sweep(t, {"resources": {"node_resources": {"retrain": {"CPU": 1}}}}),
        "node_resources.retrain: 'CPU': a custom resource of the nodes",
    ),
    Case(
        SWEEP,
        "a node resource amount of 0",
        lambda t: _sweep(t, {"resources": {"node_resources": {"search_workers": {"a10g": 0}}}}),
        "node_resources.search_workers.a10g: expected an amount > 0",
    ),
    Case(
        SWEEP,
        "node resources of an unknown phase",
        lambda t: _sweep(t, {"resources": {"node_resources": {"search": {"a10g": 1}}}}),
        "node_resources.search: unknown key",
    ),
    Case(
        SWEEP,
        "grid.lut profile_on naming CPUs",
        lambda t: _sweep(t, {"grid": {"lut": [{"profile_on": {"CPU": 1}}]}}),
        "profile_on: 'CPU': a custom resource of the nodes",
    ),
    Case(
        SWEEP,
        "grid.lut profile_on naming nothing",
        lambda t: _sweep(t, {"grid": {"lut": [{"profile_on": {}}]}}),
        "profile_on names no node resource",
    ),
    Case(
        SWEEP,
        "grid.lut profile_on of one resource twice",
        lambda t: _sweep(
            t, {"grid": {"lut": [{"profile_on": {"a": 1}}, {"profile_on": {"a": 2}}]}}
        ),
        "two profile_on entries name the same resources",
    ),
    Case(
        SWEEP,
        "cluster without a trial limit",
        lambda t: [*_sweep(t, {}), "--address", "127.0.0.1:1"],
        "max_concurrent_trials: required when attaching",
    ),
    Case(
        ARGS,
        "storage URI pyarrow cannot open",
        lambda t: [*_sweep(t, {}), "--storage-path", "nosuch://bucket/runs"],
        "not a storage URI pyarrow opens",
        names_file=False,
    ),
    Case(SWEEP, "name ..", lambda t: _sweep(t, {"name": ".."}), "name: must be a folder name"),
    Case(
        ARGS,
        "--name .",
        lambda t: [*_sweep(t, {}), "--name", "."],
        "name: must be a folder name",
        names_file=False,
    ),
    Case(
        SWEEP,
        "Python tag",
        lambda t: _sweep(t, _write(t, "s.yaml", "name: !!python/object/apply:os.getcwd []\n")),
        "invalid YAML",
    ),
    Case(
        SWEEP,
        "table for another space",
        lambda t: _sweep(
            t,
            {
                "space": {**SPACE, "F": 1.0},
                "grid": {"lut": [str(_table(t))]},
            },
        ),
        "has no entry for",
    ),
    Case(
        SWEEP,
        "dataset folder missing",
        lambda t: _sweep(t, {"data": {"dataset": "imagefolder", "data_dir": str(t / "nope")}}),
        "nope/train: no such folder",
        names_file=False,
    ),
    # ---- every field of the sections that used to go unchecked ----
    *(
        Case(
            SWEEP,
            f"{section}.{field}: {value!r}",
            lambda t, s=section, f=field, v=value: _sweep(t, {s: {f: v}}),
            f"{section}.{field}: {expect}",
        )
        for section, field, value, expect in [
            ("retrain", "epochs", 0, "must be >= 1"),
            ("retrain", "lr", 0, "must be > 0"),
            ("retrain", "momentum", -1, "must be >= 0"),
            ("retrain", "weight_decay", -0.1, "must be >= 0"),
            ("retrain", "label_smoothing", 1.0, "must be < 1"),
            ("retrain", "batch_size", "64", "must be an integer"),
            ("retrain", "compile", "yes", "must be true or false"),
            ("retrain", "measure_latency", 1, "must be true or false"),
            ("resources", "workers", -1, "must be >= 0"),
            ("resources", "cpus_per_worker", 0, "must be > 0"),
            ("resources", "gpus_per_worker", -1, "must be >= 0"),
            ("resources", "max_concurrent_trials", 0, "must be >= 1"),
            ("resources", "max_failures", 1.5, "must be an integer"),
            ("resources", "placement_timeout_s", float("nan"), "must be a finite number"),
            ("weights", "nesterov", "no", "must be true or false"),
            ("weights", "zero_init_residual", 0, "must be true or false"),
        ]
    ),
    Case(
        SWEEP,
        "space.zero: 'no'",
        lambda t: _sweep(t, {"space": {"name": "mobilenet", "zero": "no"}}),
        "space.zero: must be true or false",
    ),
    Case(
        SWEEP,
        "space.kernels: [4]",
        lambda t: _sweep(t, {"space": {"name": "mobilenet", "kernels": [4]}}),
        "space.kernels.0: must be one of 3, 5 or 7",
    ),
    # ---- search YAML ----
    Case(SEARCH, "missing file", lambda t: ["search", "--config", str(t / "no.yaml")], "no such"),
    Case(SEARCH, "unknown key", lambda t: _search(t, {"epoch": 3}), "epoch: unknown key"),
    Case(
        SEARCH,
        "wrong type",
        lambda t: _search(t, {"weights": {"lr": "fast"}}),
        "weights.lr",
    ),
    Case(SEARCH, "out of range", lambda t: _search(t, {"arch_every": 0}), "arch_every"),
    Case(
        SEARCH,
        "mul loss with a target of 1 ms or less",
        lambda t: _search(t, {"strategy": {"latency_loss": "mul", "target_ms": 0.5}}),
        "strategy.target_ms: latency_loss mul needs a target above 1 ms",
    ),
    Case(SEARCH, "unknown device", lambda t: _search(t, {"device": "gpu0"}), "device: must be"),
    Case(SEARCH, "unknown precision", lambda t: _search(t, {"amp": "half"}), "amp: must be one"),
    Case(
        SEARCH,
        "NaN",
        lambda t: ["search", "--config", str(_write(t, "s.yaml", "weights: {lr: .nan}\n"))],
        "weights.lr",
    ),
    Case(
        SEARCH,
        "wrong class count",
        lambda t: _search(t, {"space": {**SPACE, "num_classes": 7}}),
        "num_classes is 7",
    ),
    Case(
        SEARCH,
        "section of the wrong type",
        lambda t: _search(t, {"strategy": [1]}),
        "strategy: must be a mapping",
    ),
    # ---- architecture JSON ----
    Case(ARCH, "missing file", lambda t: ["arch", "stats", str(t / "a.json")], "no such file"),
    Case(ARCH, "empty", lambda t: ["arch", "stats", str(_write(t, "a.json", ""))], "empty"),
    Case(
        ARCH,
        "truncated",
        lambda t: ["arch", "stats", str(_write(t, "a.json", '{"space": {"name"'))],
        "invalid JSON",
    ),
    Case(
        ARCH,
        "unknown key",
        lambda t: ["arch", "stats", str(_write(t, "a.json", {**_arch(t), "score": 1}))],
        "exactly the keys",
    ),
    Case(
        ARCH,
        "unknown op",
        lambda t: [
            "arch",
            "stats",
            str(_write(t, "a.json", _arch(t, ops=["9x9_MBConv6"] * len(_arch(t)["ops"])))),
        ],
        "9x9_MBConv6",
    ),
    Case(
        ARCH,
        "wrong number of ops",
        lambda t: ["arch", "stats", str(_write(t, "a.json", _arch(t, ops=["zero"])))],
        "ops",
    ),
    Case(
        ARCH,
        "op not allowed at its layer",
        lambda t: [
            "arch",
            "stats",
            str(_write(t, "a.json", _arch(t, ops=["zero"] * len(_arch(t)["ops"])))),
        ],
        "zero",
    ),
    Case(
        ARCH,
        "wrong types",
        lambda t: ["arch", "stats", str(_write(t, "a.json", {"space": SPACE, "ops": "zero"}))],
        "list of op names",
    ),
    Case(
        ARCH,
        "out-of-range space knob",
        lambda t: ["arch", "stats", str(_write(t, "a.json", _arch(t, {"B": -2})))],
        "B",
    ),
    Case(
        ARCH,
        "wrong resolution",
        lambda t: ["arch", "stats", str(_write(t, "a.json", _arch(t))), "--resolution", "3"],
        "resolution",
        names_file=False,
    ),
    Case(
        ARCH,
        "classes differ from the dataset",
        lambda t: [
            "retrain",
            str(_write(t, "a.json", _arch(t, {"num_classes": 1000}))),
            "--epochs",
            "1",
        ],
        "1000 classes",
        names_file=False,
    ),
    # ---- official net.config ----
    Case(
        NETCFG,
        "unknown net",
        lambda t: ["arch", "stats", str(_write(t, "n.config", {"name": "ResNet50"}))],
        "ResNet50",
    ),
    Case(
        NETCFG,
        "layer missing keys",
        lambda t: [
            "arch",
            "stats",
            str(
                _write(
                    t,
                    "n.config",
                    {"name": "ProxylessNASNets", "first_conv": {"name": "ConvLayer"}},
                )
            ),
        ],
        "n.config",
    ),
    Case(
        NETCFG,
        "layer value out of range",
        lambda t: _net_config(t, ["blocks", 1, "mobile_inverted_conv", "kernel_size"], 0),
        "MBInvertedConvLayer.kernel_size: must be >= 1",
    ),
    Case(
        NETCFG,
        "layer value of the wrong type",
        lambda t: _net_config(t, ["first_conv", "stride"], "2"),
        "ConvLayer.stride: must be an integer",
    ),
    Case(
        NETCFG,
        "unknown activation",
        lambda t: _net_config(t, ["feature_mix_layer", "act_func"], "gelu"),
        "ConvLayer.act_func: must be one of",
    ),
    Case(
        NETCFG,
        "groups that do not divide the channels",
        lambda t: _net_config(t, ["first_conv", "groups"], 5),
        "groups 5 must divide",
    ),
    Case(
        NETCFG,
        "net-level value out of range",
        lambda t: _net_config(t, ["bn", "eps"], -1.0),
        "ProxylessNASNets.bn.eps: must be > 0",
    ),
    Case(
        NETCFG,
        "blocks not a list",
        lambda t: _net_config(t, ["blocks"], 3),
        "ProxylessNASNets.blocks: must be a list",
    ),
    # ---- latency tables ----
    Case(
        LUT_Y,
        "missing file",
        lambda t: ["latency", "predict", "--lut", str(t / "t.yaml"), "--space", "mobilenet"],
        "no such file",
    ),
    Case(
        LUT_Y,
        "entry missing a field",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(_table(t, **{"Conv-input:32x32x3-output:16x16x16": {"count": 1, "mean": 1.0}})),
            "--space",
            "mobilenet",
        ],
        "needs count, mean and var",
    ),
    Case(
        LUT_Y,
        "NaN latency",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(
                _table(
                    t,
                    **{
                        "Conv-input:32x32x3-output:16x16x16": {
                            "count": 1,
                            "mean": float("nan"),
                            "var": 0.0,
                        }
                    },
                )
            ),
            "--space",
            "mobilenet",
        ],
        "mean",
    ),
    Case(
        LUT_Y,
        "negative latency",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(
                _table(
                    t,
                    **{
                        "Conv-input:32x32x3-output:16x16x16": {"count": 1, "mean": -1.0, "var": 0.0}
                    },
                )
            ),
            "--space",
            "mobilenet",
        ],
        "mean",
    ),
    Case(
        LUT_Y,
        "unknown metadata key",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(_table(t, _meta={"colour": "red"})),
            "--space",
            "mobilenet",
        ],
        "colour",
    ),
    Case(
        LUT_Y,
        "table for another space",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(_table(t)),
            "--space",
            "mobilenet",
            "--B",
            "1",
            "--F",
            "1.0",
            "--resolution",
            "32",
            "--classes",
            "10",
        ],
        "has no entry for",
        names_file=False,
    ),
    Case(
        LUT_P,
        "not Parquet",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(_write(t, "t.parquet", "key,mean\n")),
            "--space",
            "mobilenet",
        ],
        "t.parquet",
    ),
    Case(
        LUT_P,
        "truncated",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(_truncated_parquet(t)),
            "--space",
            "mobilenet",
        ],
        "t.parquet",
    ),
    Case(
        LUT_P,
        "missing columns",
        lambda t: [
            "latency",
            "predict",
            "--lut",
            str(_parquet_without_mean(t)),
            "--space",
            "mobilenet",
        ],
        "needs columns",
    ),
    # ---- checkpoints ----
    Case(
        CKPT,
        "truncated",
        lambda t: _resume(t, _checkpoint(t)),
        "not a loadable checkpoint",
    ),
    Case(
        CKPT,
        "pickle with code",
        lambda t: _resume(t, _checkpoint(t, _pickle_bomb())),
        "not a loadable checkpoint",
    ),
    Case(
        CKPT,
        "weights of another net",
        lambda t: _export_with(t, _other_weights(t)),
        "do not fit this network",
    ),
    Case(
        CKPT,
        "missing weights file",
        lambda t: _export_with(t, t / "none.pt"),
        "no such checkpoint",
    ),
    Case(
        CKPT,
        "weights that are a pickle with code",
        lambda t: _export_with(t, _write(t, "w.pt", _pickle_bomb())),
        "not a loadable checkpoint",
    ),
    # ---- dataset folders ----
    Case(
        DATA,
        "imagefolder without train/",
        lambda t: _retrain_on(t, "imagefolder", _mkdir(t / "imgs")),
        "imagefolder",
        names_file=False,
    ),
    Case(
        DATA,
        "cifar10 folder empty",
        lambda t: _retrain_on(t, "cifar10", _mkdir(t / "cifar")),
        "cifar10",
        names_file=False,
    ),
    Case(
        DATA,
        "cifar10 batch carrying pickled code",
        lambda t: _retrain_on(t, "cifar10", _hostile_cifar(t)),
        "missing or corrupted",
        names_file=False,
    ),
    # ---- CLI arguments ----
    Case(
        ARGS,
        "zero epochs",
        lambda t: ["retrain", str(_write(t, "a.json", _arch(t))), "--epochs", "0"],
        "epochs",
        names_file=False,
    ),
    Case(ARGS, "zero workers", lambda t: ["search", "--workers", "0"], "--workers", False),
    Case(
        ARGS,
        "resume without a run",
        lambda t: ["sweep", "--resume", str(t / "run")],
        "no sweep to resume",
    ),
    Case(
        ARGS,
        "unknown export format",
        lambda t: ["export", "a.json", "--format", "pdf", "--out", "x"],
        "invalid choice",
        names_file=False,
    ),
    Case(ARGS, "not a number", lambda t: ["retrain", "a.json", "--epochs", "many"], "many", False),
    # ---- results ----
    Case(RESULTS, "missing", lambda t: ["pareto", str(t)], "no such results file"),
    Case(
        RESULTS,
        "foreign Parquet file",
        lambda t: ["pareto", str(_foreign_results(t))],
        "not a sweep results table",
    ),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _hostile_cifar(tmp: Path) -> Path:
    """torchvision's file names, each a pickle that would run a command when loaded."""
    folder = _mkdir(tmp / "cifar" / "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    for name in names:
        (folder / name).write_bytes(pickle.dumps({"data": _Exploit()}))
    return folder.parent


def _resume(tmp: Path, out: Path) -> list[str]:
    return ["search", "--resume", "--out", str(out), "--epochs", "1"]


def _export_with(tmp: Path, weights: Path) -> list[str]:
    arch = _write(tmp, "a.json", _arch(tmp))
    return [
        "export",
        str(arch),
        "--format",
        "torchscript",
        "--out",
        str(tmp / "x.ts"),
        "--weights",
        str(weights),
    ]


def _other_weights(tmp: Path) -> Path:
    from nas_core.architecture import Architecture, build_net

    other = Architecture.from_config(_arch(tmp, {"F": 1.0}))
    torch.save(build_net(other).state_dict(), tmp / "other.pt")
    return tmp / "other.pt"


def _retrain_on(tmp: Path, dataset: str, folder: Path) -> list[str]:
    arch = _write(tmp, "a.json", _arch(tmp))
    return ["retrain", str(arch), "--dataset", dataset, "--data-dir", str(folder), "--epochs", "1"]


def _parquet_table(tmp: Path) -> Path:
    from nas_core.latency.table import LatencyTable

    path = tmp / "good.parquet"
    LatencyTable.load(_table(tmp)).save(path)
    return path


def _truncated_parquet(tmp: Path) -> Path:
    data = _parquet_table(tmp).read_bytes()
    return _write(tmp, "t.parquet", data[: len(data) // 2])


def _parquet_without_mean(tmp: Path) -> Path:
    import pyarrow.parquet as pq

    table = pq.read_table(_parquet_table(tmp)).drop(["mean"])
    pq.write_table(table, tmp / "t.parquet")
    return tmp / "t.parquet"


def _foreign_results(tmp: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp / "results.parquet")
    return tmp


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_one_line_and_exit_2(case: Case, tmp_path: Path, capsys) -> None:
    argv = case.argv(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert lines and lines[0].startswith("proxyless: error:")
    if "has no entry for" in case.expect:  # missing latency keys: one key per line, by design
        assert "has no entry for" in lines[0] and len(lines) > 1
    else:
        assert len(lines) == 1, err
        assert case.expect in lines[0], lines[0]
    if case.names_file:
        named = [Path(a).name for a in argv if "/" in a]
        named += [p.name for p in tmp_path.rglob("*") if p.is_file()]  # e.g. a table a spec names
        assert any(name in lines[0] for name in named), lines[0]
    assert not Path("/tmp/proxyless-pwned").exists()


def document() -> str:
    """docs/reliability.md, generated from CASES."""
    head = [
        "# Reliability: bad inputs and what the user gets",
        "",
        "Every row is a test case of `tests/test_reliability.py`",
        "(`test_bad_input_gets_one_line_and_exit_2[<input>-/-<bad form>]`, spaces as `-`):",
        "the command that reads the input exits with code 2 and prints one line",
        "`proxyless: error: …` naming the file (where there is one) and the field or fault,",
        "never a traceback. A latency table that cannot price a network lists every missing key,",
        "one per line. Regenerate with `python -m tests.test_reliability > docs/reliability.md`.",
        "",
        "| # | input | bad form | the message contains |",
        "|---|---|---|---|",
    ]
    rows = [f"| {i} | {c.input} | {c.form} | `{c.expect}` |" for i, c in enumerate(CASES, start=1)]
    return "\n".join([*head, *rows, ""]) + TAIL


FAULTS = [
    ("checkpoint or weights carrying pickled code", "refused (`weights_only=True`)", "CKPT rows"),
    ("YAML with a Python tag", "refused (`yaml.safe_load`)", "`Python tag` rows"),
    (
        "cifar10 batch files (torchvision's pickles)",
        "unpickled only after their MD5 matches the official release",
        "`cifar10 batch carrying pickled code` row",
    ),
    (
        "process killed while writing a checkpoint, table, results or text file",
        "the previous file stays intact (temp file + rename)",
        "`test_safe_writes.py`",
    ),
    (
        "NaN / inf loss or α in a search trial",
        "the trial ends `failed`, the reason in its results row; the others finish",
        "`test_faults.py`",
    ),
    (
        "a search trial's process killed",
        "Tune restarts it from its last checkpoint",
        "`test_faults.py`",
    ),
    (
        "a retrain trial's process killed",
        "Tune restarts it; the table is complete",
        "`test_faults.py`",
    ),
    (
        "a Train worker killed mid-search",
        "Train restarts the group from the last checkpoint",
        "`test_cluster.py`",
    ),
    ("local Ray", "bound to 127.0.0.1, no dashboard, token auth on", "`test_faults.py`"),
    (
        "CUDA asked for without CUDA, or more GPUs than the Ray cluster has",
        "one line, exit 2, before anything waits",
        "`test_devices.py`",
    ),
    (
        "a checkpoint written on a GPU, resumed on the CPU",
        "continues where it stopped",
        "`test_devices.py`",
    ),
]
TAIL = "\n".join(
    [
        "",
        "## Beyond bad input",
        "",
        "| fault | what happens | test |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in FAULTS),
        "",
    ]
)


def test_the_document_lists_every_case() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert DOC.read_text() == document(), "run: python -m tests.test_reliability > " + str(DOC)


if __name__ == "__main__":
    print(document(), end="")

"""The `proxyless arch` commands, through `main()` and as a real process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.test_official import REFERENCE

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.fixtures
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_arch_stats_json_on_official_configs(fixtures_dir: Path, capsys, name: str) -> None:
    code, out, _ = _run(capsys, "arch", "stats", str(fixtures_dir / f"{name}.config"), "--json")
    assert code == 0
    stats = json.loads(out)
    assert (stats["resolution"], stats["params"], stats["macs"]) == REFERENCE[name]


def test_derive_then_stats(tmp_path: Path, capsys) -> None:
    path = tmp_path / "arch.json"
    code, out, _ = _run(
        capsys, "arch", "derive", "--space", "pyramid_tree", "--B", "1", "--F", "64",
        "--out", str(path), "--json",
    )  # fmt: skip
    assert code == 0
    derived = json.loads(out)
    assert derived["searchable_layers"] == 36 and path.exists()
    code, out, _ = _run(capsys, "arch", "stats", str(path), "--json")
    stats = json.loads(out)
    assert code == 0 and stats["params"] == derived["params"] and stats["macs"] == derived["macs"]
    code, out, _ = _run(capsys, "arch", "stats", str(path), "--resolution", "64", "--json")
    assert json.loads(out)["macs"] > 3 * stats["macs"]
    code, out, _ = _run(capsys, "arch", "stats", str(path))
    assert code == 0 and "MACs" in out and "pyramid_tree" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["arch", "stats", "{missing}"],
        ["arch", "stats", "{bad}"],
        ["arch", "stats", "{bad}", "--resolution", "zero"],
        ["arch", "stats"],
        ["arch", "launch"],
        ["arch", "derive", "--space", "mobilenet", "--B", "0"],
        ["arch", "derive", "--space", "hyperspace"],
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys, argv: list[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "ProxylessNASNets"')  # truncated
    argv = [a.format(missing=tmp_path / "nope.json", bad=bad) for a in argv]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("proxyless: error:")
    assert err.count("proxyless") == 1  # usage errors too: the prefix once, not twice


def test_version_and_every_flag_has_help(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("proxyless 0.")
    from orchestrator.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:  # argparse keeps subcommands only here
            for sub in getattr(action, "choices", None) or {}:
                if isinstance(action.choices, dict):
                    yield from parsers(action.choices[sub])

    bare = [
        f"{p.prog} {a.option_strings or a.dest}"
        for p in parsers(build_parser())
        for a in p._actions
        if not a.help and not isinstance(a, argparse._SubParsersAction)
    ]
    assert bare == []


@pytest.mark.fixtures
def test_wrong_resolution_for_a_fixed_pool_net(fixtures_dir: Path, capsys) -> None:
    path = fixtures_dir / "proxyless_cifar.config"
    code, _, err = _run(capsys, "arch", "stats", str(path), "--resolution", "64")
    assert code == 2 and "resolution 64" in err and len(err.strip().splitlines()) == 1


def test_real_process_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "arch", "stats", str(bad)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.fixtures
def test_latency_predict_with_the_official_table(fixtures_dir: Path, capsys) -> None:
    lut = str(fixtures_dir / "mobile_trim.yaml")
    code, out, _ = _run(
        capsys, "latency", "predict", "--space", "mobilenet", "--lut", lut, "--json"
    )
    assert code == 0 and json.loads(out)["latency_ms"] == pytest.approx(113.988, abs=1e-3)
    mobile = str(fixtures_dir / "proxyless_mobile.config")
    code, out, err = _run(capsys, "latency", "predict", mobile, "--lut", lut, "--json")
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 4 and lines[0].startswith("proxyless: error:")
    assert all(line.startswith("expanded_conv-input:") for line in lines[1:])


def test_latency_profile_predict_validate(tmp_path: Path, capsys) -> None:
    lut, arch = str(tmp_path / "t.parquet"), str(tmp_path / "a.json")
    space = ["--space", "mobilenet", "--B", "1", "--F", "0.5", "--resolution", "32"]
    fast = ["--warmup", "1", "--repeats", "4"]
    code, out, _ = _run(
        capsys, "latency", "profile", *space, "--classes", "10", "--threads", "1", *fast,
        "--out", lut, "--quiet",
    )  # fmt: skip
    assert code == 0 and "entries" in out
    _run(capsys, "arch", "derive", *space, "--classes", "10", "--out", arch)
    code, out, _ = _run(capsys, "latency", "predict", arch, "--lut", lut, "--json")
    assert code == 0 and json.loads(out)["latency_ms"] > 0
    code, out, _ = _run(
        capsys, "latency", "validate", "--lut", lut, "--samples", "3", *fast, "--json"
    )
    report = json.loads(out)
    assert code == 0 and {"mape", "rmse_ms", "spearman"} <= set(report)
    assert Path(report["figure"]).exists()
    # a table for another space cannot price this one: exit 2, keys listed
    code, _, err = _run(capsys, "latency", "predict", "--space", "pyramid_tree", "--lut", lut)
    assert code == 2 and "tree_stem-input" in err


def test_a_table_knows_its_space_and_every_knob_has_a_flag(tmp_path: Path, capsys) -> None:
    """The demo's kind of space (fixed transitions, fewer ops) priced without retyping it."""
    lut, arch = str(tmp_path / "t.parquet"), str(tmp_path / "a.json")
    space = ["--space", "mobilenet", "--B", "1", "--F", "0.5", "--resolution", "32"]
    knobs = ["--kernels", "3,5", "--expands", "3", "--no-zero", "--transition-op", "3x3_MBConv3"]
    fast = ["--warmup", "1", "--repeats", "4"]
    code, _, _ = _run(
        capsys, "latency", "profile", *space, *knobs, "--classes", "10", "--threads", "1",
        *fast, "--out", lut, "--quiet",
    )  # fmt: skip
    assert code == 0
    code, out, _ = _run(capsys, "arch", "derive", *space, *knobs, "--classes", "10", "--json",
                        "--out", arch)  # fmt: skip
    derived = json.loads(out)["space"]
    assert (derived["kernels"], derived["expands"], derived["zero"]) == ([3, 5], [3], False)
    assert derived["transition_op"] == "3x3_MBConv3"
    code, out, _ = _run(capsys, "latency", "predict", "--lut", lut, "--json")  # no knobs retyped
    assert code == 0 and json.loads(out)["space"] == derived
    code, out, _ = _run(capsys, "latency", "predict", "--lut", lut, "--kernels", "3", "--json")
    assert code == 0 and json.loads(out)["space"]["kernels"] == [3]  # a flag overrides one knob
    code, _, err = _run(capsys, "arch", "derive", "--space", "pyramid_tree", "--kernels", "3")
    assert code == 2 and "kernels" in err and len(err.splitlines()) == 1


def test_latency_fill_in_profiles_only_the_missing_entries(tmp_path: Path, capsys) -> None:
    from nas_core.latency.table import LatencyTable

    lut, arch = str(tmp_path / "t.parquet"), str(tmp_path / "a.json")
    space = ["--space", "mobilenet", "--B", "1", "--F", "0.5", "--resolution", "32"]
    fast = ["--warmup", "1", "--repeats", "4"]
    _run(capsys, "latency", "profile", *space, "--classes", "10", "--threads", "1", *fast,
         "--out", lut, "--quiet")  # fmt: skip
    _run(capsys, "arch", "derive", *space, "--classes", "10", "--out", arch)
    full = LatencyTable.load(lut)
    gone = sorted(k for k in full.entries if k.startswith("expanded_conv"))[:3]
    for k in gone:
        del full.entries[k]
    full.save(lut)
    code, _, err = _run(capsys, "latency", "predict", "--space", "mobilenet", "--B", "1", "--F",
                        "0.5", "--resolution", "32", "--classes", "10", "--lut", lut)  # fmt: skip
    assert code == 2 and all(k in err for k in gone)
    kept = {k: v for k, v in LatencyTable.load(lut).entries.items()}
    code, out, err = _run(capsys, "latency", "predict", *space, "--classes", "10", "--lut", lut,
                          "--fill-in", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["latency_ms"] > 0 and "filled in 3" in err
    refilled = LatencyTable.load(lut)
    assert set(gone) <= set(refilled.entries)
    assert all(refilled.entries[k] == v for k, v in kept.items())  # nothing re-measured
    imported = tmp_path / "imported.yaml"
    refilled.save(imported)
    text = imported.read_text().replace("kind: cpu", "kind: unknown")
    imported.write_text(text)
    code, _, err = _run(capsys, "latency", "predict", arch, "--lut", str(imported), "--fill-in")
    assert code == 2 and "profiled here" in err


def test_progress_lines_follow_quiet(tmp_path: Path, capsys) -> None:
    """Progress goes through the `proxyless` logger: on stdout by default, gone with --quiet
    (and with --json, whose stdout is the JSON alone); the logger is left as it was found."""
    import logging

    import yaml

    from nas_core.spaces import SearchSpace
    from tests.conftest import toy_latency_table
    from tests.learned_cases import TINY_SPACE

    lut = tmp_path / "toy.parquet"
    toy_latency_table(SearchSpace.from_config({**TINY_SPACE, "num_classes": 10})).save(lut)
    config = tmp_path / "search.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "space": TINY_SPACE,
                "lut": str(lut),
                "epochs": 1,
                "warmup_epochs": 1,
                "tensorboard": False,
            }
        )
    )
    logger = logging.getLogger("proxyless")
    before = (logger.level, list(logger.handlers), logger.propagate)
    search = ["search", "--config", str(config)]
    code, out, _ = _run(capsys, *search, "--out", str(tmp_path / "a"))
    assert code == 0 and "epoch 1/2 (warm-up)" in out and "derived architecture" in out
    code, out, _ = _run(capsys, *search, "--out", str(tmp_path / "b"), "--quiet")
    assert code == 0 and "epoch" not in out and "derived architecture" in out
    assert (logger.level, list(logger.handlers), logger.propagate) == before


@pytest.mark.slow
def test_search_resume_takes_a_folder_like_sweep_resume(tmp_path: Path, capsys) -> None:
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.spaces import create_space

    out = str(tmp_path / "s")
    space = {"B": 1, "F": 0.25, "resolution": 16, "transition_op": None}
    lut = tmp_path / "toy.parquet"  # no profiling: the test is about the folder
    synthetic_table(create_space("mobilenet", **space, num_classes=10)).save(lut)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        "space: {name: mobilenet, B: 1, F: 0.25, resolution: 16, transition_op: null}\n"
        f"data: {{dataset: digits, resolution: 16}}\nlut: {lut}\nwarmup_epochs: 1\n"
        "epochs: 1\ntensorboard: false\n"
    )
    code, first, _ = _run(capsys, "search", "--config", str(tiny), "--out", out, "--json")
    assert code == 0 and json.loads(first)["epochs"] == 2
    code, again, _ = _run(
        capsys, "search", "--config", str(tiny), "--resume", out, "--epochs", "2", "--json"
    )
    assert code == 0 and json.loads(again)["epochs"] == 3 and json.loads(again)["out_dir"] == out
    code, _, err = _run(
        capsys, "search", "--config", str(tiny), "--resume", out, "--out", str(tmp_path / "x")
    )
    assert code == 2 and "name two folders" in err


def test_arch_stats_shows_each_layer_and_its_latency_share(tmp_path: Path, capsys) -> None:
    from nas_core.architecture import Architecture
    from nas_core.latency.predictor import LatencyModel, architecture_latency
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.spaces import create_space

    space = create_space("mobilenet", B=2, F=0.5, resolution=32, num_classes=10)
    ops = tuple(s.candidates[i % len(s.candidates)] for i, s in enumerate(space.layer_specs()))
    arch = Architecture(space, ops)
    arch.save(tmp_path / "a.json")
    table = synthetic_table(space)
    table.save(tmp_path / "t.parquet")
    code, out, _ = _run(
        capsys, "arch", "stats", str(tmp_path / "a.json"), "--lut", str(tmp_path / "t.parquet"),
        "--json",
    )  # fmt: skip
    layers = json.loads(out)["layers"]
    assert code == 0 and [r["op"] for r in layers] == list(ops)
    assert [r["layer"] for r in layers] == [s.name for s in space.layer_specs()]
    assert all(r["latency_ms"] == 0 for r in layers if r["op"] == "zero")
    fixed = LatencyModel(space, table).fixed_ms
    total = architecture_latency(arch, table)
    assert sum(r["latency_ms"] for r in layers) + fixed == pytest.approx(total)
    code, out, _ = _run(capsys, "arch", "stats", str(tmp_path / "a.json"))
    assert code == 0 and all(op in out for op in set(ops)) and "blocks.1" in out

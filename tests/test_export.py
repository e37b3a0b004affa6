"""proxyless export: ONNX and TorchScript compute what the net computes; net.config rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_core.architecture import Architecture, build_net
from nas_core.nets import net_from_config
from nas_core.spaces import SearchSpace
from orchestrator.cli import main

SPACE = {"name": "mobilenet", "B": 1, "F": 0.5, "resolution": 32, "num_classes": 10}


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module]:
    space = SearchSpace.from_config(SPACE)
    arch = Architecture(space, tuple(s.candidates[-1] for s in space.layer_specs()))
    arch.save(tmp_path / "arch.json")
    net = build_net(arch).eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    return tmp_path / "arch.json", tmp_path / "weights.pt", net


def test_torchscript_matches_the_net(trained, tmp_path: Path) -> None:
    arch, weights, net = trained
    out = tmp_path / "net.ts"
    assert (
        main(
            [
                "export",
                str(arch),
                "--format",
                "torchscript",
                "--out",
                str(out),
                "--weights",
                str(weights),
            ]
        )
        == 0
    )
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(torch.jit.load(str(out))(x), net(x), atol=1e-5)


@pytest.mark.slow
def test_onnx_matches_the_net(trained, tmp_path: Path) -> None:
    from nas_core.data import normalisation
    from nas_core.latency.predictor import architecture_latency
    from nas_core.latency.synthetic import synthetic_table

    ort = pytest.importorskip("onnxruntime")
    arch, weights, net = trained
    table = synthetic_table(Architecture.load(arch).space)
    table.save(tmp_path / "toy.parquet")
    out = tmp_path / "net.onnx"
    argv = ["export", str(arch), "--format", "onnx", "--out", str(out), "--weights", str(weights)]
    assert main([*argv, "--dataset", "digits", "--lut", str(tmp_path / "toy.parquet")]) == 0
    session = ort.InferenceSession(str(out))
    for batch in (1, 5):  # a dynamic batch axis
        x = torch.randn(batch, 3, 32, 32)
        y = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(y, net(x).detach().numpy(), atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert (meta["resolution"], meta["classes"], meta["weights"]) == ("32", "10", "trained")
    # what a deployment must apply, and what the net costs on the table it was searched for
    assert (tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"]))) == normalisation(
        "digits"
    )
    latency = architecture_latency(Architecture.load(arch), table)
    assert float(meta["latency_ms"]) == pytest.approx(latency, abs=1e-4)
    assert meta["latency_device"] == "toy"


def test_export_metadata_flags_are_onnx_only(trained, tmp_path: Path, capsys) -> None:
    arch, _, _ = trained
    argv = ["export", str(arch), "--format", "torchscript", "--out", str(tmp_path / "x.ts")]
    assert main([*argv, "--dataset", "digits"]) == 2
    assert "go into ONNX metadata" in capsys.readouterr().err


def test_net_config_rebuilds_the_same_net(trained, tmp_path: Path, capsys) -> None:
    arch, _, net = trained
    out = tmp_path / "net.config"
    assert main(["export", str(arch), "--format", "net-config", "--out", str(out)]) == 0
    assert "random" not in capsys.readouterr().err  # a net.config holds no weights
    ts = ["export", str(arch), "--format", "torchscript", "--out", str(tmp_path / "x.ts")]
    assert main(ts) == 0
    assert "random" in capsys.readouterr().err  # no --weights: said on stderr
    config = json.loads(out.read_text())
    assert config.pop("resolution") == 32  # the net.config remembers its resolution
    rebuilt = net_from_config(config)
    assert rebuilt.to_config() == net.to_config()
    assert main(["arch", "stats", str(out), "--json"]) == 0  # read back at 32 px, not 224
    stats = json.loads(capsys.readouterr().out)
    want = json.loads(_stats_json(capsys, arch))
    assert (stats["resolution"], stats["macs"]) == (32, want["macs"])
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in net.parameters())


def test_weights_of_another_net_are_one_line(trained, tmp_path: Path, capsys) -> None:
    arch, _, _ = trained
    other = SearchSpace.from_config({**SPACE, "F": 1.0})
    wrong = build_net(Architecture(other, tuple(s.candidates[0] for s in other.layer_specs())))
    torch.save(wrong.state_dict(), tmp_path / "wrong.pt")
    code = main(
        [
            "export",
            str(arch),
            "--format",
            "torchscript",
            "--out",
            str(tmp_path / "x"),
            "--weights",
            str(tmp_path / "wrong.pt"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "do not fit this network" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def _stats_json(capsys, path: Path) -> str:
    assert main(["arch", "stats", str(path), "--json"]) == 0
    return capsys.readouterr().out

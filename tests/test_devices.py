"""Devices: asking for a GPU that is not there, GPU/device mismatches, checkpoints that travel."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cluster.resources import check_gpu_request, require_gpus
from nas_core.checkpoint import load_checkpoint, save_checkpoint
from nas_core.data import DataConfig
from nas_core.errors import ProxylessError
from nas_core.search import Searcher
from nas_core.search_config import SearchConfig
from nas_core.spaces import SearchSpace
from nas_core.strategy import StrategyConfig
from orchestrator.cli import main
from tests.conftest import toy_latency_table

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "transition_op": "3x3_MBConv6"}


@pytest.fixture(scope="module")
def lut(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("lut") / "toy.parquet"
    toy_latency_table(SearchSpace.from_config({**SPACE, "num_classes": 10})).save(path)
    return str(path)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("proxyless: error: ") and needle in err, err
    assert "Traceback" not in err


@no_cuda
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["search", "--device", "cuda", "--epochs", "1"], "no CUDA device"),
        (["search", "--device", "cuda:1", "--epochs", "1"], "no CUDA device"),
        (["search", "--device", "tpu"], "device: must be cpu, cuda or cuda:N"),
        (["search", "--gpus-per-worker", "1"], "applies to --workers"),
        (["search", "--workers", "2", "--gpus-per-worker", "0.5", "--device", "cuda"], "whole"),
        (["search", "--workers", "1", "--gpus-per-worker", "1"], "but device is cpu"),
        (["search", "--workers", "1", "--device", "cuda:1"], "write device: cuda"),
        (["latency", "profile", "--device", "cuda", "--out", "{tmp}/t.parquet"], "no CUDA"),
        (["retrain", "{arch}", "--device", "cuda"], "no CUDA device"),
        (["retrain", "{arch}", "--amp", "fp8"], "invalid choice"),
        (["latency", "validate", "--lut", "{cuda_lut}"], "needs a CUDA device"),
    ],
)
def test_missing_or_mismatched_gpus_are_one_line_errors(
    tmp_path: Path, capsys, lut: str, argv: list[str], needle: str
) -> None:
    arch = tmp_path / "arch.json"
    assert main(["arch", "derive", "--B", "1", "--classes", "10", "--out", str(arch)]) == 0
    cuda_lut = tmp_path / "cuda.parquet"
    table = toy_latency_table(SearchSpace.from_config({**SPACE, "num_classes": 10}))
    table.meta = type(table.meta)(name="NVIDIA H100 80GB HBM3", kind="cuda", batch_size=8)
    table.save(cuda_lut)
    capsys.readouterr()
    subst = {"{tmp}": str(tmp_path), "{arch}": str(arch), "{cuda_lut}": str(cuda_lut)}
    argv = [subst.get(a, a).replace("{tmp}", str(tmp_path)) for a in argv]
    _one_line_error(capsys, argv, needle)


def test_gpu_request_rules() -> None:
    check_gpu_request("cuda", 4, 1.0)
    check_gpu_request("cuda", 1, 0.5)  # one rank may share a GPU
    check_gpu_request("cpu", 8, 0.0)
    for device, workers, gpus, needle in [
        ("cuda", 1, 0.0, "needs GPUs"),
        ("cpu", 1, 1.0, "but device is cpu"),
        ("cuda", 2, 0.5, "whole number"),
        ("cuda", 2, 1.5, "whole number"),
        ("cuda:0", 1, 1.0, "write device: cuda"),
    ]:
        with pytest.raises(ProxylessError, match=needle):
            check_gpu_request(device, workers, gpus, "resources.gpus_per_worker")


@no_cuda
def test_a_gpu_search_on_a_cluster_without_gpus_fails_at_once(local_ray, capsys) -> None:
    """Ray Train would retry placing the workers for ever; Tune would queue the trial."""
    with pytest.raises(ProxylessError, match=r"needs 2 GPU.* cluster has 0"):
        require_gpus(2, "2 search workers")
    _one_line_error(
        capsys,
        ["search", "--workers", "1", "--device", "cuda", "--epochs", "1"],
        "needs 1 GPU(s) but the Ray cluster has 0",
    )


@contextlib.contextmanager
def storages_tagged(location: str) -> Iterator[None]:
    """torch.save records every storage as living on `location` (a device this machine lacks)."""
    from torch import serialization

    entry = (0, lambda _storage: location, lambda _storage, _location: None)
    serialization._package_registry.append(entry)
    serialization._package_registry.sort(key=lambda e: e[0])
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


@pytest.mark.slow
def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path: Path, lut: str) -> None:
    """A checkpoint written on another device (tensors tagged cuda:99, config device cuda)
    continues on the CPU and reaches the same state as a run straight through."""
    config = SearchConfig(
        space=dict(SPACE),
        data=DataConfig(resolution=16),
        strategy=StrategyConfig(lambda2=0.1, arch_lr=0.05),
        lut=lut,
        epochs=2,
        warmup_epochs=1,
        arch_every=2,
        out_dir=str(tmp_path / "a"),
        tensorboard=False,
    )
    straight = Searcher.from_config(config)
    straight.run()

    class StopSearchError(Exception):
        pass

    def stop_after(epoch: int, _metrics: dict) -> None:
        if epoch == 1:
            raise StopSearchError

    other = SearchConfig.from_config({**config.to_config(), "out_dir": str(tmp_path / "b")})
    stopped = Searcher.from_config(other)
    with pytest.raises(StopSearchError):
        stopped.run(on_epoch_end=stop_after)
    state = load_checkpoint(stopped.checkpoint_path)
    state["config"] = {**state["config"], "device": "cuda"}
    with storages_tagged("cuda:99"):
        save_checkpoint(stopped.checkpoint_path, state)
    with pytest.raises(RuntimeError, match=r"(?i)cuda"):  # the tags are real: no plain load
        torch.load(stopped.checkpoint_path, weights_only=True)

    resumed = Searcher.from_config(other)
    resumed.run(resume=True)
    assert resumed.epoch == straight.epoch == 3
    for a, b in zip(straight.net.arch_state.alphas, resumed.net.arch_state.alphas, strict=True):
        torch.testing.assert_close(a, b)
    for k, v in straight.net.state_dict().items():
        torch.testing.assert_close(v, resumed.net.state_dict()[k], msg=k)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["epochs"] == 3

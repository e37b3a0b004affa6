"""The single-process searcher: resume, outputs, learning, the λ₂ trade-off, the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from nas_core.checkpoint import load_checkpoint
from nas_core.errors import ProxylessError
from nas_core.latency.predictor import architecture_latency
from nas_core.search import Searcher, initial_arch_state
from nas_core.search_config import SearchConfig
from nas_core.strategy import STRATEGIES, StrategyConfig
from orchestrator.cli import main
from tests.learned_cases import (
    AMPS,
    BF16_SPACE,
    DIGITS_SPACE,
    RETRAIN_FLAGS,
    TINY_SPACE,
    bf16_case,
    first_ops,
    first_weight_logits,
    full_mode_case,
    logit_gap,
    reinforce_case,
    save_table,
    tiny_case,
)


@pytest.fixture(scope="module")
def tiny_lut(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_table(TINY_SPACE, tmp_path_factory.mktemp("lut") / "toy.parquet")


@pytest.fixture(scope="module")
def digits_lut(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_table(DIGITS_SPACE, tmp_path_factory.mktemp("lut") / "digits.parquet")


def _state(searcher: Searcher) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    return [a.detach().clone() for a in searcher.net.arch_state.alphas], {
        k: v.clone() for k, v in searcher.net.state_dict().items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_resumed_search_follows_the_same_trajectory(
    tmp_path: Path, tiny_lut: str, strategy: str
) -> None:
    straight = Searcher.from_config(tiny_case(tmp_path / "a", tiny_lut, name=strategy, samples=3))
    straight.run()

    class StopSearchError(Exception):
        pass

    def stop_after_first(epoch: int, _m: dict) -> None:
        if epoch == 1:  # the first search epoch, after warm-up
            raise StopSearchError

    config = tiny_case(tmp_path / "b", tiny_lut, name=strategy, samples=3)
    with pytest.raises(StopSearchError):
        Searcher.from_config(config).run(on_epoch_end=stop_after_first)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2
    resumed = Searcher.from_config(config)
    resumed.run(resume=True)
    (a1, w1), (a2, w2) = _state(straight), _state(resumed)
    for x, y in zip(a1, a2, strict=True):
        torch.testing.assert_close(x, y)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], msg=k)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]


@pytest.mark.slow
def test_search_outputs_and_logs(tmp_path: Path, tiny_lut: str) -> None:
    config = tiny_case(tmp_path, tiny_lut)
    result = Searcher.from_config(config).run()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["params"] == result.params and summary["macs"] == result.macs > 0
    from nas_core.architecture import Architecture
    from nas_core.latency.table import LatencyTable

    arch = Architecture.load(tmp_path / "architecture.json")
    assert arch == result.architecture
    assert summary["latency_table_ms"] == pytest.approx(
        architecture_latency(arch, LatencyTable.load(tiny_lut))
    )
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert {"weights", "arch", "weight_opt", "arch_opt", "strategy", "torch_rng"} <= set(state)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    for tag in (
        "train/loss",
        "valid/accuracy",
        "latency/expected_ms",
        "arch/entropy_mean",
        "arch/zero_share",
        "arch/changed_layers",
        "lr/weights",
    ):
        assert tag in tags["scalars"], tag
    # the collapse diagnostics: α stands still in warm-up; the last epoch's share is the net's
    warm, last = result.history[0], result.history[-1]
    assert warm["arch/changed_layers"] == 0
    # each layer that ends on another op than α's initial argmax moved in some epoch (seeds
    # 0–4 of this case: 3–6 of its 6 searchable layers moved, so `0 < moved` has margin)
    initial = initial_arch_state(arch.space, config).argmax()
    moved = sum(a != b for a, b in zip(initial, arch.ops, strict=True))
    assert 0 < moved <= sum(h["arch/changed_layers"] for h in result.history)
    specs = arch.space.layer_specs()
    skippable = [op for s, op in zip(specs, arch.ops, strict=True) if "zero" in s.candidates]
    assert last["arch/zero_share"] == skippable.count("zero") / len(skippable)
    assert any(t.startswith("arch_entropy/") for t in tags["scalars"])
    assert "arch/probabilities" in tags["images"]
    with pytest.raises(ProxylessError, match="another config"):
        Searcher.from_config(tiny_case(tmp_path, tiny_lut, lambda2=0.7)).run(resume=True)


@pytest.mark.slow
def test_bf16_search_runs_weight_steps_in_bf16_and_learns(tmp_path: Path) -> None:
    """Proxyless-G on digits with weight steps in bf16 (`learned_cases.bf16_case`, seed 0):
    arch steps and scoring stay fp32, the first weight step matches fp32's, α's entropy
    falls, and the search learns.

    Accuracy is not compared with an fp32 search: one seed's bf16 and fp32 trajectories part
    within an epoch (benchmarks/bar_spread.py, seeds 0–4: fp32 0.864–0.951, bf16 0.585–0.944,
    bf16 − fp32 from −0.37 to +0.05; the first epoch's mean train loss already differs by
    0.3–17 %). What does not ride on noise: the dtypes; the first weight step's logits in
    bf16 and in fp32 (same init, batch and path: only rounding differs), ‖bf16 − fp32‖ /
    ‖fp32‖ 0.10–0.16 over 5 seeds against 1.55 for another seed's init, bar 0.5; entropy
    falling (uniform α is its maximum; it fell 0.007–0.022 over 5 seeds and both precisions).
    The learned bar: valid accuracy ≥ 0.5, the lowest seed's 0.585 − 3 SE (0.029 on 287
    images), five times chance; bf16 steps that did not learn sit near 0.1.
    """
    lut = save_table(BF16_SPACE, tmp_path / "digits.parquet")
    first = [first_weight_logits(bf16_case(amp, 0, tmp_path / "first", lut)) for amp in AMPS]
    assert logit_gap(*first) <= 0.5
    config = bf16_case("bf16", 0, tmp_path / "bf16", lut)
    searcher = Searcher.from_config(config)
    seen: dict[str, set[torch.dtype]] = {"weight": set(), "arch": set(), "eval": set()}
    mixed = searcher.net.mixed_ops[0]

    def record(_m, _i, out: torch.Tensor) -> None:
        kind = "eval" if not mixed.training else "arch" if mixed.mode == "gated" else "weight"
        seen[kind].add(out.dtype)

    head = [m for m in searcher.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    head.register_forward_hook(record)
    result = searcher.run()
    history = result.history
    assert history[-1]["arch/entropy_mean"] < history[config.warmup_epochs]["arch/entropy_mean"]
    assert seen == {"weight": {torch.bfloat16}, "arch": {torch.float32}, "eval": {torch.float32}}
    assert result.valid_accuracy >= 0.5, result.valid_accuracy


@pytest.mark.slow
def test_reinforce_learns_and_lambda2_trades_latency(tmp_path: Path, digits_lut: str) -> None:
    """Proxyless-R on digits (`learned_cases.reinforce_case`, seed 0) at λ₂ = 0 and 3: entropy
    falls, λ₂ = 0 learns, λ₂ = 3 derives a strictly faster net.

    benchmarks/bar_spread.py, seeds 0–4: valid accuracy at λ₂ = 0 0.669–0.951, so the bar is
    0.669 − 3 SE (0.028 on 287 images) = 0.58, well above chance (0.1); table latency 19.2–24.3
    ms at λ₂ = 0 against 14.1–15.0 ms at λ₂ = 3, faster in 5 of 5 seeds. λ₂ means a loss weight
    to Proxyless-G and a reward exponent to Proxyless-R; Proxyless-G's trade-off over three
    values is the demo sweep's (test_sweep).
    """
    results = {}
    for lam in (0.0, 3.0):
        config = reinforce_case(lam, 0, tmp_path / f"{lam}", digits_lut)
        results[lam] = result = Searcher.from_config(config).run()
        history = result.history
        assert history[-1]["arch/entropy_mean"] < history[config.warmup_epochs]["arch/entropy_mean"]
    assert results[0.0].valid_accuracy >= 0.58, results[0.0].valid_accuracy
    assert results[0.0].latency_table_ms > results[3.0].latency_table_ms, results


def test_search_cli_config_errors(tmp_path: Path, capsys) -> None:
    cases = {
        "unknown.yaml": "epochs: 2\ncolour: red\n",
        "type.yaml": "epochs: two\n",
        "lambda.yaml": "strategy: {lambda2: -1}\n",
        "dataset.yaml": "data: {dataset: ''}\n",
        "space.yaml": "space: {name: mobilenet, B: 0}\n",
        "yaml.yaml": "epochs: [\n",
        "list.yaml": "- 1\n",
        "pickle.yaml": "!!python/object/apply:os.system ['true']\n",
    }
    # safe_load refuses the tag; an unsafe loader would run it and report something else
    expected = {"pickle.yaml": "could not determine a constructor"}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        code = main(["search", "--config", str(path)])
        err = capsys.readouterr().err
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1 and str(path) in err, (name, err)
        assert expected.get(name, "") in err, (name, err)
    code = main(["search", "--config", str(tmp_path / "missing.yaml")])
    assert code == 2 and "no such file" in capsys.readouterr().err


def test_exponent_floats_are_numbers_and_a_saved_config_json_loads_back(tmp_path: Path) -> None:
    """PyYAML reads `4e-5` as a string (YAML 1.1 wants a dot); YAML 1.2 and JSON read a number.
    A spec with `weight_decay: 4e-5` was refused, and so was a search's own config.json, which
    json.dumps writes with `1e-08`."""
    from nas_core.search_config import load_search_config

    path = tmp_path / "exponents.yaml"
    path.write_text("weights: {weight_decay: 4e-5, lr: 2.5E-2}\nstrategy: {arch_eps: 1e-8}\n")
    config = load_search_config(path)
    assert (config.weights.weight_decay, config.weights.lr) == (4e-5, 0.025)
    assert config.strategy.arch_eps == 1e-8
    path.write_text('weights: {weight_decay: "4e-5"}\n')  # quoted: a string, still refused
    with pytest.raises(ProxylessError, match="must be a number"):
        load_search_config(path)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(SearchConfig().to_config(), indent=2))
    assert "1e-08" in saved.read_text()
    assert load_search_config(saved) == SearchConfig()
    from nas_core.io import dump_yaml, read_yaml

    looks_like_a_number = {"commit": "7806e12", "also": "1e5", "number": 1e5}
    path.write_text(dump_yaml(looks_like_a_number))  # the writer quotes what the reader'd parse
    assert read_yaml(path) == looks_like_a_number


@pytest.mark.slow
def test_full_mode_search_lowers_entropy(tmp_path: Path, tiny_lut: str) -> None:
    """Every gate's gradient moves α off uniform (entropy's maximum): benchmarks/bar_spread.py,
    seeds 0–4, fell 0.232–0.282; the bar, a fall of 0.01, is 20 times below the lowest."""
    history = Searcher.from_config(full_mode_case(tmp_path, tiny_lut)).run().history
    assert history[-1]["arch/entropy_mean"] < history[0]["arch/entropy_mean"] - 0.01


@pytest.mark.slow
def test_retrain_reports_accuracy_size_and_latency(tmp_path: Path, tiny_lut: str, capsys) -> None:

    arch = first_ops(TINY_SPACE)
    arch.save(tmp_path / "arch.json")
    code = main(
        ["retrain", str(tmp_path / "arch.json"), *RETRAIN_FLAGS,
         "--lut", tiny_lut, "--out", str(tmp_path / "out"), "--json"]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    # 8 epochs of digits at 16 px: 0.919-0.950 over seeds 0-4 (benchmarks/bar_spread.py); the
    # bar is 5 binomial SE (0.014 on 360 test images) under the lowest, far above chance (0.1)
    assert report["test_accuracy"] > 0.85
    assert report["params"] > 0 and report["macs"] > 0 and report["latency_measured_ms"] > 0
    from nas_core.latency.table import LatencyTable

    assert report["latency_table_ms"] == pytest.approx(
        architecture_latency(arch, LatencyTable.load(tiny_lut))
    )
    weights = torch.load(tmp_path / "out" / "weights.pt", weights_only=True)
    assert any(k.endswith("weight") for k in weights)
    code = main(["retrain", str(tmp_path / "arch.json"), "--dataset", "cifar10"])
    assert code == 2 and "data_dir" in capsys.readouterr().err


def test_official_schedule_settings(tmp_path: Path, tiny_lut: str) -> None:
    """warmup_lr peaks the warm-up, the search restarts at lr; arch_start_epoch skips α updates
    in the first search epoch; he_fout initialises as the official code does."""
    base = tiny_case(tmp_path / "s", tiny_lut)
    config = base.replace(
        weights=base.weights.replace(lr=0.1, warmup_lr=0.3, init="he_fout"),
        warmup_epochs=1,
        epochs=2,
        arch_start_epoch=1,
        tensorboard=False,
    )
    searcher = Searcher.from_config(config)
    assert searcher.lr_at(0, 0, 10) == pytest.approx(0.3)  # warm-up: from warmup_lr
    assert searcher.lr_at(1, 0, 10) == pytest.approx(0.1)  # search: restarted at lr
    convs = [m for m in searcher.net.modules() if isinstance(m, torch.nn.Conv2d)]
    widest = max(convs, key=lambda m: m.weight.numel())
    fan_out = widest.kernel_size[0] * widest.kernel_size[1] * widest.out_channels
    assert widest.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
    history = searcher.run().history
    assert "arch/ce" not in history[1]  # the first search epoch: weights only
    assert "arch/ce" in history[2]


@pytest.mark.parametrize(("updates", "batches"), [(3, 10), (10, 10), (1, 7), (4, 9)])
def test_updates_per_epoch_spread_evenly(updates: int, batches: int) -> None:
    config = SearchConfig(strategy=StrategyConfig(name="reinforce", updates_per_epoch=updates))
    due = [b for b in range(batches) if config.arch_steps_in(b, batches)]
    assert len(due) == updates  # exactly that many α updates per epoch
    gaps = [b - a for a, b in itertools.pairwise([-1, *due])]
    assert max(gaps) - min(gaps) <= 1  # evenly spread
    with pytest.raises(ProxylessError, match=r"strategy\.updates_per_epoch: 8 is more than"):
        SearchConfig(strategy=StrategyConfig(name="reinforce", updates_per_epoch=8)).arch_steps_in(
            0, 7
        )

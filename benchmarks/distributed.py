"""What the Ray layer costs: the architecture actor's round trip, and 1 vs 2 DDP workers.

The distributed search (`cluster/search.py`) adds two costs to the single-process searcher:

1. Every arch step, the K ranks reduce their signals over their process group and rank 0 sends
   the result to the central `ArchitectureActor` in one `step` call, which replies with the
   new α and the update's metrics (`cluster.worker.ActorArchSync`). Issue target: that round
   trip <= 0.05x one super-net weight step. This script creates the actor exactly as
   `run_search` does (`ray.remote(num_cpus=0)`, one worker), builds the same super-net in the
   driver (one torch thread, like a Ray Train worker), and per round times one weight step on a
   path sampled from softmax(α) (`nas_core.training.weight_step`), one Proxyless-G signal (not
   part of the round trip), then `ray.get(step)` with the copy of α into the net (the round
   trip, which includes the actor's Adam step on α). Medians after warm-up rounds; a small
   setting (the one the throughput runs use) and, unless `--no-large`, the paper-size space
   (B=4, F=1.0) at 64 px.
2. Weight-training throughput with K = 1 and K = 2 Ray Train workers: `run_search` on the
   embedded digits set (warm-up epochs plus search epochs), Ray started once before both so its
   start-up is not timed. Every epoch rank 0 reports a Train checkpoint; the gap between the
   first and the last checkpoint's write times spans all epochs but the first (which carries the
   workers' first-step costs), and each checkpoint's `step` gives the batches a rank ran, hence
   images. An epoch interval includes everything a real epoch does: weight steps, arch steps,
   the end-of-epoch validation and the checkpoint. Batch sizes are global (each of K ranks takes
   batch / K), so both runs make the same steps per epoch and `throughput_2_over_1` is the ratio
   of images (steps × batch) per second. End-to-end walls of `run_search`
   (worker start-up, process group, dataset, final derivation) are reported too. The K=2 run's
   `sync/grad_bytes_per_step` (what `PathSync` all-reduced) over the fp32 bytes of a sampled
   compact net is `sync_bytes_per_weight_step_over_compact_net`.
3. Calls the actor serves per arch step (unless `--no-count-calls`): `run_search` at K = 1, 2
   and 4 for one search epoch with an `ArchitectureActor` subclass defined here that logs every
   call it serves to a file, over the arch steps the ranks ran (batches // arch_every).

`scaling_note` turns these figures into an estimate for a multi-node cluster. Ray logs go to
stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from console import print_summary, progress_log

from cluster.arch_actor import ArchitectureActor, split_alphas
from cluster.connect import ensure_ray
from cluster.search import run_search
from nas_core.checkpoint import load_checkpoint
from nas_core.data import DataConfig
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.synthetic import synthetic_table
from nas_core.sampling import Stream, sample_paths, step_generator
from nas_core.search_config import SearchConfig, WeightConfig
from nas_core.spaces import SearchSpace
from nas_core.stats import count_params
from nas_core.strategy import StrategyConfig, create_strategy
from nas_core.supernet import SuperNet
from nas_core.training import weight_step

SMALL_SPACE = {"name": "mobilenet", "B": 2, "F": 0.5, "resolution": 32}
LARGE_SPACE = {"name": "mobilenet", "B": 4, "F": 1.0, "resolution": 64}
TRANSITION_OP = "3x3_MBConv6"
NUM_CLASSES = 10
LAMBDA2 = 0.1
TARGET_ROUNDTRIP_RATIO = 0.05
ASSUMED_LINK_GBPS = 10.0  # for the all-reduce estimate in scaling_note


log = progress_log("distributed")


def space_config(base: dict[str, Any], resolution: int | None = None) -> dict[str, Any]:
    cfg = {**base, "transition_op": TRANSITION_OP}
    if resolution is not None:
        cfg["resolution"] = resolution
    return cfg


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def quartiles(v: list[float]) -> list[float]:
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return [ms(q[0]), ms(q[2])]


# ---- 1. the architecture actor's round trip vs a weight step ----


def measure_actor(
    cfg: dict[str, Any], batch: int, rounds: int, warmup: int, seed: int, label: str
) -> dict[str, Any]:
    """Interleaved rounds of weight step / signal / actor round trip on one super-net."""
    import ray

    space = SearchSpace.from_config({**cfg, "num_classes": NUM_CLASSES})
    table = synthetic_table(space)
    strategy_config = StrategyConfig(lambda2=LAMBDA2)
    w = WeightConfig()
    torch.manual_seed(seed)
    net = SuperNet(space)
    net.arch_state.init_normal_(step_generator(seed, 0, Stream.ALPHA_INIT), 1e-3)
    net.zero_init_residual_()
    net.train()
    strategy = create_strategy(strategy_config, LatencyModel(space, table))  # as a worker
    opt = torch.optim.SGD(
        net.parameters(),
        lr=w.lr,
        momentum=w.momentum,
        nesterov=w.nesterov,
        weight_decay=w.weight_decay,
    )
    actor = ray.remote(num_cpus=0, max_restarts=0)(ArchitectureActor).remote(
        space.to_config(),
        strategy_config.to_config(),
        net.arch_state.to_config(),
        table.to_yaml_dict(),
    )
    generation = ray.get(actor.begin.remote(None))[0]  # the actor is up before any timing
    local = ArchitectureActor(  # the same state machine in-process: its compute alone
        space.to_config(),
        strategy_config.to_config(),
        net.arch_state.to_config(),
        table.to_yaml_dict(),
    )
    local_generation = local.begin(None)[0]
    g = torch.Generator().manual_seed(seed)
    res = cfg["resolution"]
    x = torch.randn(batch, 3, res, res, generator=g)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    vx = torch.randn(batch, 3, res, res, generator=g)
    vy = torch.randint(0, NUM_CLASSES, (batch,), generator=g)

    fixed_params = count_params(net) - sum(count_params(op) for op in net.mixed_ops)
    names = ("weight_step", "signal", "roundtrip", "actor_compute")
    times: dict[str, list[float]] = {n: [] for n in names}
    active_params: list[int] = []
    signal_bytes = reply_bytes = 0
    for r in range(warmup + rounds):
        row: dict[str, float] = {}
        path = sample_paths(net.arch_state, step_generator(seed, r, Stream.WEIGHT_PATHS))
        t0 = time.perf_counter()
        net.set_paths(path)
        weight_step(net, opt, x, y, w.lr, w.label_smoothing)
        row["weight_step"] = time.perf_counter() - t0
        active_params.append(
            fixed_params
            + sum(count_params(op.candidates[j]) for op, j in zip(net.mixed_ops, path, strict=True))
        )

        t0 = time.perf_counter()
        signal = strategy.signal(net, vx, vy, step_generator(seed, r, Stream.ARCH))
        row["signal"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        reply = ray.get(actor.step.remote(generation, r, signal))
        version, flat, _metrics = reply
        with torch.no_grad():
            for a, b in zip(net.arch_state.alphas, split_alphas(flat, net.arch_state), strict=True):
                a.copy_(b)
        row["roundtrip"] = time.perf_counter() - t0
        if version != r + 1:
            raise SystemExit(f"actor version {version} after {r + 1} steps")
        t0 = time.perf_counter()
        local.step(local_generation, r, signal)
        row["actor_compute"] = time.perf_counter() - t0
        if r == 0:
            signal_bytes = len(pickle.dumps(signal))
            reply_bytes = len(pickle.dumps(reply))
        if r >= warmup:
            for n in names:
                times[n].append(row[n])
        tag = "warm-up" if r < warmup else f"round {r - warmup + 1}/{rounds}"
        log(f"{label} {tag}: " + ", ".join(f"{n} {row[n] * 1e3:.1f}" for n in names) + " ms")
    ray.kill(actor)

    med = {n: statistics.median(v) for n, v in times.items()}
    params = count_params(net)
    return {
        "roundtrip_over_weight_step": round(med["roundtrip"] / med["weight_step"], 4),
        "paired_median_roundtrip_over_weight_step": round(
            statistics.median(
                a / b for a, b in zip(times["roundtrip"], times["weight_step"], strict=True)
            ),
            4,
        ),
        "median_ms": {n: ms(v) for n, v in med.items()},
        "iqr_ms": {n: quartiles(v) for n, v in times.items()},
        "roundtrip_minus_actor_compute_ms": ms(med["roundtrip"] - med["actor_compute"]),
        "signal_pickle_bytes": signal_bytes,
        "reply_pickle_bytes": reply_bytes,
        "supernet_params": params,
        "active_path_params_mean": round(statistics.mean(active_params[warmup:])),
        "space": space.to_config(),
        "searchable_layers": len(net.specs),
        "batch": batch,
        "rounds": rounds,
        "warmup_rounds": warmup,
    }


# ---- 2. weight-training throughput, K = 1 vs K = 2 ----


def search_config(args: argparse.Namespace, out: Path, lut: Path) -> SearchConfig:
    return SearchConfig(
        space=space_config(SMALL_SPACE, args.resolution),
        data=DataConfig(resolution=args.resolution),
        strategy=StrategyConfig(lambda2=LAMBDA2),
        weights=WeightConfig(batch_size=args.batch),
        lut=str(lut),
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        arch_every=args.arch_every,
        arch_batch_size=args.batch,
        seed=args.seed,
        out_dir=str(out),
        tensorboard=False,
    )


def measure_run(config: SearchConfig, workers: int) -> dict[str, Any]:
    """`run_search` with `workers` ranks; epoch times from rank 0's per-epoch checkpoints."""
    t0 = time.perf_counter()
    total = config.warmup_epochs + config.epochs
    result = run_search(config, num_workers=workers, checkpoints_to_keep=total)
    wall = time.perf_counter() - t0
    ckpt_dir = Path(config.out_dir).resolve() / "ray" / "search"
    files = sorted(
        (p / "checkpoint.pt" for p in ckpt_dir.glob("checkpoint_*") if p.is_dir()),
        key=lambda f: f.stat().st_mtime,
    )
    if len(files) != total:
        raise SystemExit(f"{ckpt_dir}: {len(files)} checkpoints, expected {total}")
    stamps = [f.stat().st_mtime for f in files]
    states = [load_checkpoint(f) for f in files]
    steps = [int(state["step"]) for state in states]
    grad_bytes = [m.get("sync/grad_bytes_per_step") for m in states[-1]["history"]]
    per_epoch_steps = [b - a for a, b in itertools.pairwise([0, *steps])]
    intervals = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "workers": workers,
        "end_to_end_s": round(wall, 2),
        "timed_epochs": total - 1,
        "timed_s": round(stamps[-1] - stamps[0], 3),
        "epoch_s": [round(v, 3) for v in intervals],
        "steps_per_epoch_per_rank": per_epoch_steps,
        "timed_steps_per_rank": steps[-1] - steps[0],
        "total_steps_per_rank": steps[-1],
        "valid_accuracy": round(result.valid_accuracy, 4),
        "grad_bytes_per_step": grad_bytes,  # per epoch, K > 1 only
    }


def throughput(runs: dict[int, dict[str, Any]], batch: int) -> dict[str, Any]:
    """Images per second: batch sizes are global, so every step of any K trains one batch."""
    for run in runs.values():
        run["timed_images"] = run["timed_steps_per_rank"] * batch
        run["images_per_s"] = round(run["timed_images"] / run["timed_s"], 1)
        all_images = run["total_steps_per_rank"] * batch
        run["end_to_end_images_per_s"] = round(all_images / run["end_to_end_s"], 1)
    one, two = runs[1], runs[2]
    return {
        "throughput_2_over_1": round(two["images_per_s"] / one["images_per_s"], 4),
        "end_to_end_throughput_2_over_1": round(
            two["end_to_end_images_per_s"] / one["end_to_end_images_per_s"], 4
        ),
        "same_steps_per_epoch": two["steps_per_epoch_per_rank"] == one["steps_per_epoch_per_rank"],
    }


# ---- 3. calls the actor serves per arch step, K = 1, 2, 4 ----


def count_actor_calls(config: SearchConfig, workers: int, calls_file: Path) -> dict[str, Any]:
    """`run_search` with an actor that appends the name of every call it serves to a file."""

    class CountingActor(ArchitectureActor):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.serving = True  # the constructor's own state_dict() is no served call

        def _served(self, name: str) -> None:
            if getattr(self, "serving", False):
                with open(calls_file, "a") as f:
                    f.write(name + "\n")

        def begin(self, *args: Any) -> Any:
            self._served("begin")
            return super().begin(*args)

        def step(self, *args: Any) -> Any:
            self._served("step")
            return super().step(*args)

        def state_dict(self) -> Any:
            self._served("state_dict")
            return super().state_dict()

        def alphas(self) -> Any:
            self._served("alphas")
            return super().alphas()

    run_search(config, num_workers=workers, cpus_per_worker=2 / workers, actor_cls=CountingActor)
    names = calls_file.read_text().split()
    calls = {n: names.count(n) for n in sorted(set(names))}
    ckpt = max(
        (Path(config.out_dir).resolve() / "ray" / "search").glob("checkpoint_*/checkpoint.pt"),
        key=lambda f: f.stat().st_mtime,
    )
    batches_per_rank = int(load_checkpoint(ckpt)["step"])  # one search epoch, no warm-up
    arch_steps = batches_per_rank // config.arch_every
    return {
        "workers": workers,
        "arch_steps": arch_steps,
        "calls": calls,
        "calls_per_arch_step": round(calls.get("step", 0) / arch_steps, 4),
        "all_calls_per_arch_step": round(len(names) / arch_steps, 4),
    }


# ---- the note ----


def scaling_note(
    small: dict[str, Any],
    large: dict[str, Any] | None,
    tp: dict[str, Any],
    runs: dict[int, dict[str, Any]],
    arch_every: int,
    batch: int,
) -> str:
    m = small["median_ms"]
    ratio = small["roundtrip_over_weight_step"]
    parts = [
        f"Actor: an arch step's one call (the reduced signal in, alpha and metrics back) takes"
        f" {m['roundtrip']:.1f} ms ="
        f" {ratio} of a {m['weight_step']:.0f} ms weight step at the small setting"
    ]
    if large is not None:
        lm = large["median_ms"]
        parts.append(
            f" and {large['roundtrip_over_weight_step']} of a {lm['weight_step']:.0f} ms step"
            f" at the paper-size space (B={LARGE_SPACE['B']}, F={LARGE_SPACE['F']},"
            f" {large['space']['resolution']} px): the round trip barely grows (payloads"
            f" {large['signal_pickle_bytes'] / 1024:.1f} KB), so the ratio shrinks as steps get"
            " heavier"
        )
    parts.append(
        f". Only {m['actor_compute']:.1f} ms of it is the actor's own work (apply + copy of"
        " alpha, in-process); the rest is Ray's RPC on 2 busy cores (the signal travels as host"
        " arrays, alpha comes back as one flat array). Paid once per"
        f" arch_every={arch_every} weight steps it is {ratio / arch_every:.3f} of weight time."
        " Only rank 0 calls the actor, once per arch step whatever K; across nodes that call"
        " gains a LAN hop (~0.1-1 ms; KB payloads) and the signal's all-reduce waits for the"
        " slowest of K ranks, so stragglers, not the RPC, dominate at scale."
    )
    full_mb = small["supernet_params"] * 4 / 1e6
    active_mb = small["active_path_params_mean"] * 4 / 1e6
    ddp = (
        " Weights: PathSync all-reduces only the sampled path's gradients, ~"
        f"{active_mb:.2f} MB per weight step here against the super-net's {full_mb:.1f} MB that"
        " DDP with find_unused_parameters=True moved (zeros for unused candidates)"
    )
    if large is not None:
        big_mb = large["active_path_params_mean"] * 4 / 1e6
        ring_ms = big_mb / (ASSUMED_LINK_GBPS / 8 * 1e3) * 1e3  # 2(K-1)/K = 1 at K = 2
        ddp += (
            f"; {big_mb:.0f} MB at the paper-size space, ~{ring_ms:.0f} ms per step on a"
            f" {ASSUMED_LINK_GBPS:.0f} Gb/s ring at K=2, up to twice that for large K"
        )
    ddp += ": the volume of one compact net, whatever the number of candidates."
    parts.append(ddp)
    one, two = runs[1], runs[2]
    parts.append(
        f" Throughput: 2 single-thread workers, each taking half of every {batch}-image"
        f" global batch from its half of the data, gave {tp['throughput_2_over_1']}x the images/s"
        f" of 1 (epochs {statistics.median(one['epoch_s']):.2f} s vs"
        f" {statistics.median(two['epoch_s']):.2f} s, the same"
        f" {one['steps_per_epoch_per_rank'][0]} steps each): halving a rank's batch does not"
        " halve a step on these 2 shared cores (per-step Python, the path sync and Ray's own"
        " processes stay), a floor for separate nodes where each rank has its own cores."
    )
    return "".join(parts)


# ---- main ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="weight (and arch) batch size")
    p.add_argument("--resolution", type=int, default=32, help="small setting and digits")
    p.add_argument("--rounds", type=int, default=20, help="timed actor rounds, small setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed actor rounds first")
    p.add_argument("--large-batch", type=int, default=32)
    p.add_argument("--large-resolution", type=int, default=64)
    p.add_argument("--large-rounds", type=int, default=6)
    p.add_argument("--no-large", dest="large", action="store_false", help="skip the paper space")
    p.add_argument("--warmup-epochs", type=int, default=2, help="run_search warm-up epochs")
    p.add_argument("--epochs", type=int, default=2, help="run_search search epochs")
    p.add_argument("--arch-every", type=int, default=5)
    p.add_argument("--no-throughput", dest="throughput", action="store_false")
    p.add_argument("--no-count-calls", dest="count_calls", action="store_false",
                   help="skip counting the actor's calls at K = 1, 2, 4")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None, help="keep run_search outputs here (default: tmp)")
    args = p.parse_args(argv)
    if min(args.batch, args.rounds, args.large_batch, args.large_rounds, args.arch_every) < 1:
        raise SystemExit("batch sizes, rounds and --arch-every must be >= 1")
    if min(args.resolution, args.large_resolution) < 8:
        raise SystemExit("resolutions must be >= 8")
    if args.warmup < 0 or args.warmup_epochs < 0 or args.epochs < 1:
        raise SystemExit("--warmup, --warmup-epochs must be >= 0 and --epochs >= 1")
    if args.throughput and args.warmup_epochs + args.epochs < 2:
        raise SystemExit("throughput needs at least 2 epochs in all (the first is not timed)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import ray

    t_start = time.perf_counter()
    torch.set_num_threads(1)  # a Ray Train worker on a 1-CPU bundle runs one thread
    load_before = os.getloadavg()[0]
    ensure_ray(num_cpus=2)
    log(f"ray up in {time.perf_counter() - t_start:.1f} s")
    out: dict[str, Any] = {}
    try:
        small = measure_actor(
            space_config(SMALL_SPACE, args.resolution),
            args.batch,
            args.rounds,
            args.warmup,
            args.seed,
            "small",
        )
        large = None
        if args.large:
            large = measure_actor(
                space_config(LARGE_SPACE, args.large_resolution),
                args.large_batch,
                args.large_rounds,
                1,
                args.seed,
                "large",
            )
        out["actor_roundtrip_over_weight_step"] = small["roundtrip_over_weight_step"]
        out["throughput_2_over_1"] = None
        out["target_actor_roundtrip_over_weight_step"] = TARGET_ROUNDTRIP_RATIO
        out["actor_roundtrip_ms"] = small["median_ms"]["roundtrip"]
        out["weight_step_ms"] = small["median_ms"]["weight_step"]
        out["actor_roundtrip_over_weight_step_large"] = (
            large["roundtrip_over_weight_step"] if large else None
        )
        out["actor_roundtrip_amortised_over_weight_steps"] = round(
            small["roundtrip_over_weight_step"] / args.arch_every, 5
        )

        runs: dict[int, dict[str, Any]] = {}
        tp: dict[str, Any] = {}
        if args.throughput:
            with tempfile.TemporaryDirectory(prefix="proxyless-distributed-") as tmp:
                root = Path(args.out_dir) if args.out_dir else Path(tmp)
                root.mkdir(parents=True, exist_ok=True)
                lut = root / "toy.parquet"
                space = SearchSpace.from_config(
                    {**space_config(SMALL_SPACE, args.resolution), "num_classes": NUM_CLASSES}
                )
                synthetic_table(space).save(lut)
                for k in (1, 2):
                    log(f"run_search with {k} worker(s)")
                    config = search_config(args, root / f"workers{k}", lut)
                    runs[k] = measure_run(config, k)
                    log(f"{k} worker(s): {runs[k]}")
            tp = throughput(runs, args.batch)
            out["throughput_2_over_1"] = tp["throughput_2_over_1"]
            out.update({k: v for k, v in tp.items() if k != "throughput_2_over_1"})
            out["images_per_s"] = {str(k): r["images_per_s"] for k, r in runs.items()}
            moved = statistics.mean(runs[2]["grad_bytes_per_step"])
            compact = small["active_path_params_mean"] * 4  # fp32 gradients of a sampled path
            out["sync_bytes_per_weight_step"] = round(moved)
            out["compact_net_param_bytes"] = compact
            out["sync_bytes_per_weight_step_over_compact_net"] = round(moved / compact, 4)
            out["supernet_param_bytes"] = small["supernet_params"] * 4
            out["end_to_end_s"] = {str(k): r["end_to_end_s"] for k, r in runs.items()}
            out["runs"] = {str(k): r for k, r in runs.items()}
            out["scaling_note"] = scaling_note(small, large, tp, runs, args.arch_every, args.batch)
        if args.count_calls:
            with tempfile.TemporaryDirectory(prefix="proxyless-calls-") as tmp:
                root = Path(tmp)
                lut = root / "toy.parquet"
                space = SearchSpace.from_config(
                    {**space_config(SMALL_SPACE, args.resolution), "num_classes": NUM_CLASSES}
                )
                synthetic_table(space).save(lut)
                counted = {}
                for k in (1, 2, 4):
                    config = search_config(args, root / f"calls{k}", lut).replace(
                        warmup_epochs=0, epochs=1
                    )
                    counted[k] = count_actor_calls(config, k, root / f"calls{k}.txt")
                    log(f"actor calls with {k} worker(s): {counted[k]}")
            out["actor_calls_per_arch_step"] = {
                str(k): c["calls_per_arch_step"] for k, c in counted.items()
            }
            out["actor_calls"] = {str(k): c for k, c in counted.items()}
        else:
            del out["throughput_2_over_1"]
        out["actor"] = {"small": small, "large": large}
        out["settings"] = {
            "throughput_search": {
                "space": space_config(SMALL_SPACE, args.resolution),
                "dataset": "digits",
                "batch": args.batch,
                "warmup_epochs": args.warmup_epochs,
                "epochs": args.epochs,
                "arch_every": args.arch_every,
                "strategy": "gradient",
                "lambda2": LAMBDA2,
                "latency_table": "toy (tests/conftest.py logic)",
            },
            "actor_workers": 1,
            "ray_num_cpus": 2,
            "driver_threads": torch.get_num_threads(),
            "seed": args.seed,
        }
        out["method"] = (
            "actor: median over interleaved rounds of perf_counter around weight_step (sampled"
            " path) and ray.get(actor.step)+copy of alpha; throughput: rank 0's per-epoch"
            " checkpoint write times (first epoch untimed) and their step counts; Ray started"
            " once before both runs"
        )
    finally:
        ray.shutdown()
    out["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out["cpus"] = len(os.sched_getaffinity(0))
    out["torch"] = torch.__version__
    out["ray"] = ray.__version__
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    log(f"done in {out['wall_s']} s")
    print_summary(out)


if __name__ == "__main__":
    main()

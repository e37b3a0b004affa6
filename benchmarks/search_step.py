"""Wall time of one search step: super-net weight step vs standalone net, and the arch step.

ProxylessNAS trains the over-parameterised super-net one sampled path at a time, so a weight
step should cost about what training the derived net alone costs (issue target: super-net
weight step <= 1.2x a standalone step). The arch step (Proxyless-G, two-path BinaryConnect)
runs the held-out batch forward through the active path and, in backward, recomputes the
other sampled path of every layer to get the gate gradients, so it costs roughly one more
forward than a weight step's forward. This script times, on the paper's `mobilenet` space
(B=4, F=1.0, 21 searchable layers), side by side in one process:

- `supernet_sampled`: one super-net weight step on a path freshly drawn from softmax(alpha)
  (generator of (seed, step), as the searcher does), drawing and `set_paths` included;
- `supernet_fixed`: the same super-net, weight step on one fixed, Zero-free path;
- `standalone`: `build_net` of exactly that fixed path, same optimiser, same step function;
- `arch_step`: `strategy.signal` + `strategy.apply` (two-path gradient, lambda2 = 0);
- with the breakdown on, two parts of the arch step: `arch_forward` (gates drawn and set,
  forward, CE) and `other_path_forward` (a no-grad forward of the other sampled path, an
  estimate of what the backward recomputes); the rest of the arch step is the active path's
  input-gradient backward, the gate products and Adam on alpha.

Every weight step is `nas_core.training.weight_step` (forward, label-smoothed CE, backward,
nesterov SGD with weight decay), so both nets pay identical overhead. The fixed path is by
default a "typical" one: among Zero-free paths sampled from softmax(alpha), the one whose MACs
are closest to the expected MACs of a sampled path (Zero layers included), so the fixed and
sampled measurements run comparable compute; `--op` instead uses one op at every layer.
Batches are fixed random tensors (data loading is not timed). After warm-up rounds the
measurements run round-robin, rotating the order every round so drift and cache effects hit
all alike; medians (and medians of per-round paired ratios) are reported. On CUDA every timed
step is bracketed by `torch.cuda.synchronize()`. On a CPU shared with other busy processes,
`--threads` above the free cores makes every OpenMP barrier wait for a descheduled thread and
steps jump from ~0.3 s to seconds: the JSON records the load average; use `--threads 1` there.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from console import pick_device, print_summary, progress_log

from nas_core.architecture import Architecture, build_net, ops_of
from nas_core.ops import ZERO
from nas_core.precision import Amp
from nas_core.sampling import Stream, sample_gates, sample_paths, step_generator
from nas_core.spaces import create_space
from nas_core.stats import count_macs, count_params
from nas_core.strategy import StrategyConfig, create_strategy, make_arch_optimizer
from nas_core.supernet import SuperNet
from nas_core.training import weight_step

SPACE, BLOCKS, WIDTH, NUM_CLASSES = "mobilenet", 4, 1.0, 10
LR, MOMENTUM, WEIGHT_DECAY, LABEL_SMOOTHING = 0.025, 0.9, 4e-5, 0.1  # WeightConfig defaults
ALPHA_INIT_STD = 1e-3
TARGET_WEIGHT_STEP_RATIO = 1.2
MAIN = ("supernet_sampled", "supernet_fixed", "standalone", "arch_step")
BREAKDOWN = ("arch_forward", "other_path_forward")
DEFAULT_BATCH, DEFAULT_RESOLUTION, DEFAULT_REPEATS, DEFAULT_WARMUP = 16, 64, 24, 2


log = progress_log("search_step")


def layer_macs(net: SuperNet) -> list[list[int]]:
    """MACs of candidate j at layer i (additive: every layer's input shape is fixed)."""
    return [
        [count_macs(c, spec.input_size, spec.in_channels) for c in op.candidates]
        for spec, op in zip(net.specs, net.mixed_ops, strict=True)
    ]


def path_macs(table: list[list[int]], path: list[int]) -> int:
    return sum(row[j] for row, j in zip(table, path, strict=True))


def expected_macs(table: list[list[int]], net: SuperNet) -> float:
    probs = net.arch_state.all_probs()
    return sum(
        float((p.detach() * torch.tensor(r, dtype=p.dtype)).sum())
        for p, r in zip(probs, table, strict=True)
    )


def has_zero(net: SuperNet, path: list[int]) -> bool:
    return any(spec.candidates[j] == ZERO for spec, j in zip(net.specs, path, strict=True))


def choose_fixed_path(
    net: SuperNet, table: list[list[int]], args: argparse.Namespace
) -> tuple[list[int], str]:
    """One op everywhere (`--op`), or the typical Zero-free sampled path (closest to E[MACs])."""
    if args.op is not None:
        if args.op == ZERO or any(args.op not in s.candidates for s in net.specs):
            raise SystemExit(f"--op {args.op!r} must be a non-Zero candidate of every layer")
        return [s.candidates.index(args.op) for s in net.specs], f"--op {args.op} at every layer"
    target = expected_macs(table, net)
    pool: list[list[int]] = []
    k = 0
    while len(pool) < args.pool:
        path = sample_paths(net.arch_state, step_generator(args.seed, k, Stream.FIXED_PATH))
        k += 1
        if not has_zero(net, path):
            pool.append(path)
    best = min(pool, key=lambda p: abs(path_macs(table, p) - target))
    how = (
        f"Zero-free path closest to E[MACs] of a sampled path among {args.pool} Zero-free"
        f" paths sampled from softmax(alpha) ({k} draws, stream {Stream.FIXED_PATH.value})"
    )
    return best, how


def make_batch(
    batch: int, resolution: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, resolution, resolution, generator=g)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    return x.to(device), y.to(device)


def sgd(params: Any) -> torch.optim.SGD:
    return torch.optim.SGD(
        params, lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
    )


class Bench:
    """The super-net, the standalone net of the fixed path, their optimisers and the steps."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        torch.manual_seed(args.seed)
        self.space = create_space(
            SPACE, B=BLOCKS, F=WIDTH, resolution=args.resolution, num_classes=NUM_CLASSES
        )
        net = SuperNet(self.space)
        net.arch_state.init_normal_(step_generator(args.seed, 0, Stream.ALPHA_INIT), ALPHA_INIT_STD)
        self.macs_table = layer_macs(net)
        self.fixed, self.fixed_how = choose_fixed_path(net, self.macs_table, args)
        self.arch = Architecture(self.space, ops_of(self.space, self.fixed))
        torch.manual_seed(args.seed)
        standalone = build_net(self.arch)
        self.net = net.to(device).train()
        self.standalone = standalone.to(device).train()
        self.opt = sgd(self.net.parameters())
        self.standalone_opt = sgd(self.standalone.parameters())
        self.strategy = create_strategy(StrategyConfig(lambda2=0.0), None)
        self.arch_opt = make_arch_optimizer(self.net.arch_state, self.strategy.config)
        self.x, self.y = make_batch(args.batch, args.resolution, args.seed, device)
        self.vx, self.vy = make_batch(args.batch, args.resolution, args.seed + 1, device)
        self.seed = args.seed
        self.amp = Amp(args.amp, device)  # weight steps only; arch steps are always fp32
        self.sampled_paths: list[list[int]] = []

    def steps(self, step: int) -> dict[str, Callable[[], None]]:
        net, seed = self.net, self.seed

        def supernet_sampled() -> None:
            path = sample_paths(net.arch_state, step_generator(seed, step, Stream.WEIGHT_PATHS))
            net.set_paths(path)
            weight_step(net, self.opt, self.x, self.y, LR, LABEL_SMOOTHING, self.amp)
            self.sampled_paths.append(path)

        def supernet_fixed() -> None:
            net.set_paths(self.fixed)
            weight_step(net, self.opt, self.x, self.y, LR, LABEL_SMOOTHING, self.amp)

        def standalone() -> None:
            opt, x, y = self.standalone_opt, self.x, self.y
            weight_step(self.standalone, opt, x, y, LR, LABEL_SMOOTHING, self.amp)

        def arch_step() -> None:
            gen = step_generator(seed, step, Stream.ARCH)
            signal = self.strategy.signal(net, self.vx, self.vy, gen)
            self.strategy.apply(signal, net.arch_state, self.arch_opt)

        def gates() -> list[Any]:
            gen = step_generator(seed, step, Stream.ARCH)
            return sample_gates(net.arch_state, gen, self.strategy.config.grad_mode)

        def arch_forward() -> None:  # what signal() does before autograd.grad
            net.set_gates(gates())
            logits = net(self.vx)
            ce = F.cross_entropy(logits, self.vy)
            float(ce.detach())

        other = [
            s.involved[1 - s.active_slot] if len(s.involved) == 2 else s.active for s in gates()
        ]

        def other_path_forward() -> None:  # ~ the backward's recompute of the other paths
            net.set_paths(other)
            with torch.no_grad():
                net(self.vx)

        return {
            "supernet_sampled": supernet_sampled,
            "supernet_fixed": supernet_fixed,
            "standalone": standalone,
            "arch_step": arch_step,
            "arch_forward": arch_forward,
            "other_path_forward": other_path_forward,
        }


def timed(fn: Callable[[], None], cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(bench: Bench, args: argparse.Namespace, cuda: bool) -> dict[str, list[float]]:
    """Warm-up rounds, then `repeats` rounds of every measurement, order rotated per round."""
    names = MAIN + (BREAKDOWN if args.breakdown else ())
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.warmup + args.repeats):
        steps = bench.steps(r)
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        row = {n: timed(steps[n], cuda) for n in order}
        if r >= args.warmup:
            for n in names:
                times[n].append(row[n])
        tag = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.repeats}"
        log(f"{tag}: " + ", ".join(f"{n} {row[n] * 1e3:.0f}" for n in names) + " ms")
    return times


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def summarise(
    times: dict[str, list[float]], bench: Bench, args: argparse.Namespace, device: str
) -> dict[str, Any]:
    med = {n: statistics.median(v) for n, v in times.items()}

    def ratio(a: str, b: str) -> float:
        return round(med[a] / med[b], 4)

    def paired(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(times[a], times[b], strict=True)), 4)

    def quartiles(v: list[float]) -> list[float]:
        q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
        return [ms(q[0]), ms(q[2])]

    sampled = bench.sampled_paths[args.warmup :]
    net = bench.net
    zero_layers = [
        sum(net.specs[i].candidates[j] == ZERO for i, j in enumerate(p)) for p in sampled
    ]
    out: dict[str, Any] = {
        "weight_step_over_standalone": ratio("supernet_sampled", "standalone"),
        "arch_step_over_weight_step": ratio("arch_step", "supernet_sampled"),
        "weight_step_fixed_path_over_standalone": ratio("supernet_fixed", "standalone"),
        "arch_step_over_standalone": ratio("arch_step", "standalone"),
        "target_weight_step_over_standalone": TARGET_WEIGHT_STEP_RATIO,
        "paired_median_ratios": {
            "weight_step_over_standalone": paired("supernet_sampled", "standalone"),
            "arch_step_over_weight_step": paired("arch_step", "supernet_sampled"),
            "weight_step_fixed_path_over_standalone": paired("supernet_fixed", "standalone"),
        },
        "median_ms": {n: ms(v) for n, v in med.items()},
        "images_per_s": {
            n: round(args.batch / med[n], 1) for n in ("supernet_sampled", "standalone")
        },
        "iqr_ms": {n: quartiles(v) for n, v in times.items()},
    }
    if args.breakdown:
        fwd, other = med["arch_forward"], med["other_path_forward"]
        out["arch_step_breakdown_ms"] = {
            "forward_active_path": ms(fwd),
            "recompute_other_path_estimate": ms(other),
            "rest_backward_gates_adam": ms(med["arch_step"] - fwd - other),
        }
    out.update(
        {
            "fixed_path": {
                "choice": bench.fixed_how,
                "ops": list(bench.arch.ops),
                "macs": path_macs(bench.macs_table, bench.fixed),
            },
            "sampled_paths": {
                "count": len(sampled),
                "mean_macs": round(
                    statistics.mean(path_macs(bench.macs_table, p) for p in sampled)
                ),
                "expected_macs_now": round(expected_macs(bench.macs_table, net)),
                "mean_zero_layers": round(statistics.mean(zero_layers), 2),
            },
            "macs_note": "searchable layers only, one image; stem and head are the same in all",
            "params": {
                "supernet": count_params(net),
                "standalone": count_params(bench.standalone),
                "supernet_tensors": len(list(net.parameters())),
                "standalone_tensors": len(list(bench.standalone.parameters())),
            },
            "space": {"name": SPACE, "B": BLOCKS, "F": WIDTH, "num_classes": NUM_CLASSES},
            "searchable_layers": len(net.specs),
            "batch": args.batch,
            "amp": args.amp,
            "resolution": args.resolution,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "device": device,
            "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "weights": {
                "lr": LR,
                "momentum": MOMENTUM,
                "nesterov": True,
                "weight_decay": WEIGHT_DECAY,
                "label_smoothing": LABEL_SMOOTHING,
            },
            "arch": {
                "strategy": "gradient",
                "grad_mode": bench.strategy.config.grad_mode,
                "lambda2": 0.0,
            },
            "method": "time.perf_counter per step"
            + (", cuda synchronize around each" if device == "cuda" else "")
            + "; round-robin with the order rotated each round after warm-up rounds; medians",
            "torch": torch.__version__,
        }
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed rounds")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="weight steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--op", default=None, help="fixed path = this op at every layer")
    p.add_argument("--pool", type=int, default=16, help="Zero-free paths to pick the typical from")
    p.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip the arch-step forward / recompute measurements",
    )
    args = p.parse_args(argv)
    if min(args.batch, args.resolution, args.repeats, args.threads, args.pool) < 1:
        raise SystemExit("--batch, --resolution, --repeats, --threads and --pool must be >= 1")
    if args.warmup < 0:
        raise SystemExit("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    t0 = time.perf_counter()
    bench = Bench(args, torch.device(device))
    log(
        f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}, resolution"
        f" {args.resolution}; fixed path {list(bench.arch.ops)}; setup"
        f" {time.perf_counter() - t0:.1f} s"
    )
    load_before = os.getloadavg()[0]
    if device == "cpu" and load_before > len(os.sched_getaffinity(0)) - args.threads + 0.75:
        log(
            f"load average {load_before:.1f} on {len(os.sched_getaffinity(0))} CPUs: with"
            f" --threads {args.threads} timings may be erratic (try --threads 1)"
        )
    times = measure(bench, args, device == "cuda")
    summary = summarise(times, bench, args, device)
    summary["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    summary["cpus"] = len(os.sched_getaffinity(0))
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    log(f"done in {summary['wall_s']} s")
    print_summary(summary)


if __name__ == "__main__":
    main()

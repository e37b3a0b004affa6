"""The prepared GPU smoke test: run it first whenever a CUDA machine is available.

Every step is its own subprocess with its own timeout, so one hang does not eat the rest:
the device; a small CUDA latency table profiled (CUDA graphs) and validated end to end; one
MBConv timed with CUDA graphs and with eager forwards between events; a single-process search
whose weight and arch steps run under `torch.cuda.set_sync_debug_mode("error")` (any host sync
inside a step fails it); gradient and REINFORCE searches with `amp: bf16`, each resumed; the
Ray Train path with K = 1 on NCCL; the same search in one process and as one NCCL Train
worker (images/s and peak memory side by side); retraining on CUDA; a TorchScript export run on
CUDA; search and retrain throughput in fp32 and bf16; `benchmarks/memory.py` and
`benchmarks/search_step.py` on CUDA. Without CUDA the CPU-safe steps run on the CPU (bf16
autocast included) and the rest print "no CUDA: skipped". The last line of stdout is one
JSON summary.

    benchmarks/gpu_check.sh [OUT_DIR]      (default runs/gpu-check)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console import print_summary, progress_log

REPO_ROOT = Path(__file__).resolve().parent.parent

DIGITS_SPACE = {"name": "mobilenet", "B": 2, "F": 0.5, "resolution": 32, "transition_op": None}
# without CUDA the same steps on a smaller space: CPU bf16 convolutions are often emulated
CPU_SPACE = {"name": "mobilenet", "B": 1, "F": 0.25, "resolution": 16, "transition_op": None}
# heavier setting for throughput: the paper's space at 96 px, batch 128 (digits, no download)
THROUGHPUT_SPACE = {"name": "mobilenet", "B": 4, "F": 1.0, "resolution": 96}
THROUGHPUT_BATCH = 128
# single process vs one Ray Train worker on NCCL: the profiled table's space, batch 128
HEAVY_SEARCH_SPACE = {"name": "mobilenet", "B": 2, "F": 0.5, "resolution": 64}
MBCONV_KEY = "expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:5-stride:1-idskip:1"


log = progress_log("gpu_check")


@dataclass(frozen=True)
class Step:
    """One subprocess of the check: argv, its own timeout, and whether it needs CUDA."""

    name: str
    argv: list[str]
    timeout_s: float
    cuda_only: bool = False


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def probe(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--probe", *args]


def search_yaml(out: Path, name: str, space: dict, strategy: str, batch: int, **extra: Any) -> str:
    """A digits search config file (lut null: profiled on the search's own device)."""
    from nas_core.io import dump_yaml

    config = {
        "space": space,
        "data": {"dataset": "digits", "resolution": space["resolution"]},
        "strategy": {"name": strategy, "lambda2": 0.1, "arch_lr": 0.05, "samples": 4},
        "weights": {"lr": 0.1, "batch_size": batch},
        "warmup_epochs": 1,
        "epochs": 1,
        "arch_every": 2,
        "tensorboard": False,
        **extra,
    }
    path = out / f"{name}.yaml"
    path.write_text(dump_yaml(config))
    return str(path)


def steps(out: Path, cuda: bool) -> list[Step]:
    dev = "cuda" if cuda else "cpu"
    space = DIGITS_SPACE if cuda else CPU_SPACE
    small = search_yaml(out, "search-small", space, "gradient", 64)
    small_r = search_yaml(out, "search-reinforce", space, "reinforce", 64)
    heavy_arch = str(out / "heavy-arch.json")
    arch = str(out / "search-bf16" / "architecture.json")
    table = str(out / "cuda-table.parquet")
    knobs = ["--space", "mobilenet", "--B", "2", "--F", "0.5", "--resolution", "64"]
    out_s = str(out)
    plan = [
        Step("device", probe("device"), 60),
        Step(
            "derive",
            cli(
                "arch",
                "derive",
                "--space",
                "mobilenet",
                "--B",
                str(THROUGHPUT_SPACE["B"]),
                "--F",
                str(THROUGHPUT_SPACE["F"]),
                "--resolution",
                str(THROUGHPUT_SPACE["resolution"]),
                "--classes",
                "10",
                "--out",
                heavy_arch,
                "--json",
            ),
            60,
        ),
        Step(
            "profile",
            cli(
                "latency",
                "profile",
                *knobs,
                "--classes",
                "10",
                "--device",
                "cuda",
                "--warmup",
                "3",
                "--repeats",
                "10",
                "--out",
                table,
                "--quiet",
            ),
            150,
            cuda_only=True,
        ),
        Step(
            "validate",
            cli(
                "latency",
                "validate",
                "--lut",
                table,
                "--samples",
                "8",
                "--warmup",
                "3",
                "--repeats",
                "10",
                "--json",
            ),
            120,
            cuda_only=True,
        ),
        Step("mbconv_timing", probe("mbconv"), 90, cuda_only=True),
        Step("sync_debug_search", probe("sync", out_s), 150, cuda_only=True),
        Step(
            "search_bf16",
            cli(
                "search",
                "--config",
                small,
                "--device",
                dev,
                "--amp",
                "bf16",
                "--out",
                f"{out}/search-bf16",
                "--json",
            ),
            240,
        ),
        Step(
            "search_bf16_resume",
            cli(
                "search",
                "--config",
                small,
                "--device",
                dev,
                "--amp",
                "bf16",
                "--epochs",
                "2",
                "--out",
                f"{out}/search-bf16",
                "--resume",
                "--json",
            ),
            180,
        ),
        Step(
            "reinforce_bf16",
            cli(
                "search",
                "--config",
                small_r,
                "--device",
                dev,
                "--amp",
                "bf16",
                "--out",
                f"{out}/reinforce-bf16",
                "--json",
            ),
            240,
        ),
        Step(
            "reinforce_bf16_resume",
            cli(
                "search",
                "--config",
                small_r,
                "--device",
                dev,
                "--amp",
                "bf16",
                "--epochs",
                "2",
                "--out",
                f"{out}/reinforce-bf16",
                "--resume",
                "--json",
            ),
            180,
        ),
        Step(
            "ray_train_k1",
            cli(
                "search",
                "--config",
                small,
                "--device",
                dev,
                "--amp",
                "bf16",
                "--workers",
                "1",
                "--out",
                f"{out}/search-train",
                "--json",
            ),
            300,
        ),
        Step(
            "retrain",
            cli(
                "retrain",
                arch,
                "--device",
                dev,
                "--amp",
                "bf16",
                "--epochs",
                "2",
                "--out",
                f"{out}/retrain",
                "--json",
            ),
            180,
        ),
        Step(
            "export_torchscript",
            probe("export", arch, f"{out}/retrain/weights.pt", f"{out}/net.torchscript", dev),
            120,
        ),
    ]
    # issue 13's check: the same heavier search in one process and as one NCCL Train worker
    heavy = search_yaml(
        out, "search-heavy", HEAVY_SEARCH_SPACE, "gradient", THROUGHPUT_BATCH, lut=table, epochs=3
    )
    for name, workers in (("heavy_single", []), ("heavy_train_k1", ["--workers", "1"])):
        plan.append(
            Step(
                name,
                cli(
                    "search",
                    "--config",
                    heavy,
                    "--device",
                    dev,
                    *workers,
                    "--out",
                    f"{out}/{name}",
                    "--json",
                ),
                240,
                cuda_only=True,
            )
        )
    bench = str(REPO_ROOT / "benchmarks")
    for amp in ("off", "bf16"):  # weight steps of the paper's super-net and of its derived net
        plan.append(
            Step(
                f"search_step_{amp}",
                [
                    sys.executable,
                    f"{bench}/search_step.py",
                    "--device",
                    "cuda",
                    "--amp",
                    amp,
                    "--batch",
                    str(THROUGHPUT_BATCH),
                    "--resolution",
                    "128",
                    "--repeats",
                    "10",
                    "--no-breakdown",
                ],
                180,
                cuda_only=True,
            )
        )
    for amp in ("off", "bf16"):
        plan.append(
            Step(
                f"throughput_retrain_{amp}",
                cli(
                    "retrain",
                    heavy_arch,
                    "--device",
                    "cuda",
                    "--amp",
                    amp,
                    "--epochs",
                    "3",
                    "--batch-size",
                    str(THROUGHPUT_BATCH),
                    "--out",
                    f"{out}/heavy-{amp}",
                    "--json",
                ),
                180,
                cuda_only=True,
            )
        )
    if cuda:
        plan.append(Step("memory", [sys.executable, f"{bench}/memory.py", "--device", "cuda"], 240))
    else:  # the same scripts, small enough for a CPU
        plan.append(
            Step(
                "memory",
                [
                    sys.executable,
                    f"{bench}/memory.py",
                    "--device",
                    "cpu",
                    "--resolution",
                    "64",
                    "--batch",
                    "2",
                    "--repeats",
                    "1",
                ],
                300,
            )
        )
        plan.append(
            Step(
                "search_step_off",
                [
                    sys.executable,
                    f"{bench}/search_step.py",
                    "--device",
                    "cpu",
                    "--resolution",
                    "32",
                    "--repeats",
                    "3",
                    "--warmup",
                    "1",
                    "--no-breakdown",
                ],
                300,
            )
        )
    return plan  # fmt: skip


def last_json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def run_step(step: Step, out: Path, env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    log(f"{step.name}: {' '.join(step.argv[1:])[:160]}")
    t0 = time.perf_counter()
    logfile = out / f"{step.name}.log"
    try:
        done = subprocess.run(
            step.argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,  # a timed-out step's Ray processes go with its group
        )
        status = "pass" if done.returncode == 0 else f"fail (exit {done.returncode})"
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        status = f"timeout after {timeout_s:g} s"
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    wall = round(time.perf_counter() - t0, 1)
    logfile.write_text(f"$ {' '.join(step.argv)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    result = last_json(stdout)
    if status != "pass":
        tail = [ln for ln in (stderr or stdout).strip().splitlines() if ln.strip()][-3:]
        log(f"{step.name}: {status}: {' | '.join(tail)[:400]}")
    else:
        log(f"{step.name}: pass in {wall} s")
    return {"status": status, "wall_s": wall, "result": result}


# ---- probes: the steps that are not a CLI command ----


def probe_device() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(
            name=p.name,
            capability=f"{p.major}.{p.minor}",
            memory_gib=round(p.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError:
        out["ray"] = None
    print_summary(out)
    return out


def probe_mbconv() -> None:
    """One MBConv timed both ways at batch 1 and 8: graphs measure the GPU, events Python."""
    from nas_core.latency.modules import module_for_key
    from nas_core.latency.profiler import ProfileConfig, time_module

    out: dict[str, Any] = {"key": MBCONV_KEY}
    for batch in (1, 8):
        for timing in ("graph", "events"):
            module, shape = module_for_key(MBCONV_KEY)
            config = ProfileConfig(
                device="cuda", batch_size=batch, warmup=10, repeats=50, cuda_timing=timing
            )
            out[f"{timing}_ms_batch{batch}"] = round(time_module(module, shape, config).mean, 4)
        out[f"events_over_graph_batch{batch}"] = round(
            out[f"events_ms_batch{batch}"] / out[f"graph_ms_batch{batch}"], 3
        )
    print_summary(out)


def probe_sync(out_dir: str) -> None:
    """A bf16 search whose every train step (weight + arch) runs in sync-debug "error" mode."""
    import torch

    from nas_core.data import build_datasets
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.search import Searcher
    from nas_core.search_config import SearchConfig
    from nas_core.strategy import StrategyConfig

    class SyncCheckedSearcher(Searcher):
        steps_checked = 0

        def train_step(self, *args: Any, **kwargs: Any) -> None:
            torch.cuda.set_sync_debug_mode("error")
            try:
                super().train_step(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            SyncCheckedSearcher.steps_checked += 1

    result = {}
    for strategy in ("gradient", "reinforce"):
        config = SearchConfig(
            space=dict(DIGITS_SPACE),
            strategy=StrategyConfig(name=strategy, lambda2=0.1, arch_lr=0.05, samples=4),
            warmup_epochs=1,
            epochs=1,
            arch_every=2,
            device="cuda",
            amp="bf16",
            out_dir=f"{out_dir}/sync-{strategy}",
            tensorboard=False,
        )
        data = build_datasets(config.data)
        space = config.build_space(data.num_classes)
        searcher = SyncCheckedSearcher(config, data, synthetic_table(space))
        searcher.run()
        result[strategy] = searcher.history[-1]["valid/accuracy"]
    print_summary({"steps_checked": SyncCheckedSearcher.steps_checked, "valid_accuracy": result})


def probe_export(arch: str, weights: str, path: str, device: str) -> None:
    """Export TorchScript with the retrained weights, load it on `device`, compare with eager."""
    import torch

    from nas_core.architecture import Architecture, build_net
    from nas_core.weights import load_weights_file
    from orchestrator.export import export

    a = Architecture.load(arch)
    export(build_net(a), a.space.resolution, "torchscript", path, weights=weights)
    scripted = torch.jit.load(path, map_location=device).eval()
    eager = build_net(a)
    load_weights_file(eager, weights)
    eager = eager.to(device).eval()
    r = a.space.resolution
    x = torch.randn(4, 3, r, r, device=device)
    with torch.no_grad():
        diff = float((scripted(x) - eager(x)).abs().max())
    print_summary({"device": device, "max_abs_diff": diff, "ok": diff < 1e-4})
    if diff >= 1e-4:
        raise SystemExit(f"TorchScript and eager outputs differ by {diff}")


# ---- the summary ----


def summarise(results: dict[str, dict[str, Any]], cuda: bool, wall: float) -> dict[str, Any]:
    def res(name: str) -> dict[str, Any]:
        return results.get(name, {}).get("result") or {}

    summary: dict[str, Any] = {
        "cuda": cuda,
        "device": res("device").get("name", "cpu"),
        "steps": {n: r["status"] for n, r in results.items()},
        "passed": all(r["status"] in ("pass", "no CUDA: skipped") for r in results.values()),
        "wall_s": round(wall, 1),
    }
    summary["images_per_s"] = {
        f"{kind}_{amp}": (res(f"search_step_{amp}").get("images_per_s") or {}).get(kind)
        for kind in ("supernet_sampled", "standalone")
        for amp in ("off", "bf16")
    }
    summary["images_per_s"].update(
        {
            f"retrain_epoch_{a}": res(f"throughput_retrain_{a}").get("images_per_s")
            for a in ("off", "bf16")
        }
    )
    memory = res("memory")
    summary["peak_memory"] = {
        "supernet_over_standalone": memory.get("supernet_over_standalone"),
        "peak_bytes": memory.get("peak_bytes"),
    }
    summary["mbconv_timing_ms"] = res("mbconv_timing") or None
    validate = res("validate")
    summary["table_validation"] = {k: validate.get(k) for k in ("mape", "spearman", "samples")}
    step = res("search_step_off")
    summary["search_step"] = {
        k: step.get(k)
        for k in ("weight_step_over_standalone", "arch_step_over_weight_step", "median_ms")
    }
    summary["sync_debug"] = res("sync_debug_search") or None
    single, k1 = res("heavy_single"), res("heavy_train_k1")
    summary["train_k1_vs_single"] = {  # last (search) epoch of the same config, fp32
        "images_per_s_single": single.get("images_per_s"),
        "images_per_s_k1": k1.get("images_per_s"),
        "k1_over_single": (
            round(k1["images_per_s"] / single["images_per_s"], 3)
            if single.get("images_per_s") and k1.get("images_per_s")
            else None
        ),
        "peak_memory_gib_single": single.get("peak_memory_gib"),
        "peak_memory_gib_k1": k1.get("peak_memory_gib"),
    }
    summary["resumed_epochs"] = {  # 3 = warm-up 1 + search 1, resumed with --epochs 2
        n: res(f"{n}_resume").get("epochs") for n in ("search_bf16", "reinforce_bf16")
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="runs/gpu-check")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", default=None, help="run only these steps")
    parser.add_argument(
        "--deadline-s", type=float, default=540.0, help="skip steps that would start later"
    )
    args = parser.parse_args(argv)
    if args.probe:
        name, *rest = args.probe
        {"device": probe_device, "mbconv": probe_mbconv, "sync": probe_sync,
         "export": probe_export}[name](*rest)  # fmt: skip
        return 0
    import torch

    cuda = torch.cuda.is_available()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # no empty entry: it would put each step's working directory on its path too
    paths = (str(REPO_ROOT), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for step in steps(out, cuda):
        if args.only and step.name not in args.only:
            continue
        if step.cuda_only and not cuda:
            log(f"{step.name}: no CUDA: skipped")
            results[step.name] = {"status": "no CUDA: skipped", "wall_s": 0.0, "result": None}
            continue
        left = args.deadline_s - (time.perf_counter() - t0)
        if left < 20:
            log(f"{step.name}: skipped, the {args.deadline_s:g} s deadline is near")
            results[step.name] = {"status": "skipped (deadline)", "wall_s": 0.0, "result": None}
            continue
        results[step.name] = run_step(step, out, env, min(step.timeout_s, left))
    summary = summarise(results, cuda, time.perf_counter() - t0)
    (out / "summary.json").write_text(json.dumps({**summary, "details": results}, indent=2))
    print_summary(summary)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

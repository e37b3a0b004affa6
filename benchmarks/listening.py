"""What listens on a cluster node while a distributed search runs, measured.

Starts a real Ray head the way a cluster's head starts (`ray start --head` on this machine's
routable address, token auth, the dashboard on 127.0.0.1 as the launcher configs start it), in
its own process group with its own temp dir, attaches to it like a user would (`--address`),
runs a 2-worker search, and samples every listening TCP socket of every process of that head
(its process group, and everything naming its temp dir) while the search runs. Then the same
for a local instance (`ray.init` here: everything on 127.0.0.1, the ranks' process group
included, see `cluster.loopback`). Stops only what it started (the group, then whatever still
names the temp dir; never `ray stop`). Last line of stdout: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from console import print_summary, progress_log

RAY = str(Path(sys.executable).with_name("ray"))


log = progress_log("listening")


def routable_ip() -> str:
    """The address this machine would use to reach others (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def kind(title: str) -> str:
    """A process's role from its command line."""
    if title.startswith("ray::"):
        return title.split()[0]
    names = {
        "gcs_server": "gcs_server",
        "raylet": "raylet",
        "client.server": "ray client server",
        "dashboard/agent": "dashboard agent",
        "dashboard": "dashboard",
        "log_monitor": "log_monitor",
        "monitor": "monitor",
        "runtime_env": "runtime_env agent",
    }
    for needle, name in names.items():
        if needle in title:
            return name
    return title[:120] or "?"


class Sampler:
    """Every listening socket of the processes `find()` returns, sampled in a thread."""

    def __init__(self, find: Any, every_s: float = 0.25) -> None:
        self.find, self.every_s = find, every_s
        self.seen: dict[tuple[str, int], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for p in self.find():
                with contextlib.suppress(psutil.Error):
                    title = " ".join(p.cmdline()) or p.name()
                    for c in p.net_connections(kind="tcp"):
                        if c.status == psutil.CONN_LISTEN:
                            self.seen[(c.laddr.ip, c.laddr.port)] = kind(title)
            self._stop.wait(self.every_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def summary(seen: dict[tuple[str, int], str], gcs_port: int | None = None) -> dict[str, Any]:
    """Per process role: the addresses it listened on (ports other than the GCS's vary)."""
    out: dict[str, set[str]] = {}
    for (ip, port), role in seen.items():
        out.setdefault(role, set()).add(f"{ip}:{port}" if port == gcs_port else ip)
    return {role: sorted(addrs) for role, addrs in sorted(out.items())}


def search_config(out: Path) -> Any:
    from nas_core.data import DataConfig
    from nas_core.search_config import SearchConfig, WeightConfig
    from nas_core.strategy import StrategyConfig

    return SearchConfig(
        space={"name": "mobilenet", "B": 1, "F": 0.25, "resolution": 16},
        data=DataConfig(resolution=16),
        strategy=StrategyConfig(lambda2=0.0, arch_lr=0.05),
        weights=WeightConfig(lr=0.1),
        epochs=2,
        warmup_epochs=0,
        arch_every=2,
        out_dir=str(out),
        tensorboard=False,
    )


def on_a_head(work: Path) -> dict[str, Any]:
    """A head on the routable address, a 2-worker search attached to it."""
    import psutil

    temp, port, ip = work / "ray", free_port(), routable_ip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp}",
         "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip

    def processes() -> list[psutil.Process]:
        """The head's process group, their descendants (Ray's workers), anything naming temp."""
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            with contextlib.suppress(psutil.Error):
                if os.getpgid(p.pid) == head.pid or str(temp) in cmd:
                    found[p.pid] = p
                    for child in p.children(recursive=True):
                        found[child.pid] = child
        return list(found.values())

    try:
        deadline = time.time() + 120
        while True:
            with contextlib.suppress(OSError), socket.create_connection((ip, port), 1):
                break
            if time.time() > deadline or head.poll() is not None:
                raise SystemExit("the head did not come up")
            time.sleep(0.5)
        os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        from cluster.search import run_search

        with Sampler(processes) as sampler:
            run_search(search_config(work / "head"), 2, address=f"{ip}:{port}")
            ray.shutdown()
        return {"node_address": ip, "gcs_port": port, **summary(sampler.seen, port)}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        time.sleep(3)
        for p in processes():
            with contextlib.suppress(psutil.Error):
                p.kill()


def on_a_local_instance(work: Path) -> dict[str, Any]:
    """`ray.init` here (127.0.0.1), a 2-worker search on it."""
    import psutil
    import ray

    from cluster.connect import ensure_ray
    from cluster.search import run_search

    ensure_ray(num_cpus=2)
    with Sampler(lambda: psutil.Process().children(recursive=True)) as sampler:
        run_search(search_config(work / "local"), 2)
    ray.shutdown()
    return summary(sampler.seen)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        head = on_a_head(Path(tmp))
        log(json.dumps(head))
        local = on_a_local_instance(Path(tmp))
    print_summary(
        {
            "cluster_node": head,
            "local_instance": local,
            "wall_s": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()

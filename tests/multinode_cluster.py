"""A Ray cluster of several nodes on this machine, as Ray's own suites simulate one
(`ray.cluster_utils.Cluster`), run as its own process so that a test stops it by process group.

`python tests/multinode_cluster.py TEMP_DIR WORKERS`: a head with no CPUs (as the launcher
configs' head), WORKERS 2-CPU worker nodes, each with its own temp dir, all on 127.0.0.1 in
single-machine mode (else Ray rewrites 127.0.0.1 to the routable address and drivers cannot
reach the GCS), with health checks that declare a removed node dead in seconds. Worker node i
offers the custom resource `node-i` (1 of it), as a node type of a heterogeneous cluster would;
`TEMP_DIR/nodes.json` maps each label to its node's id. Writes `TEMP_DIR/address` once every
node is up, and shuts the cluster down on SIGTERM. On SIGUSR1 it removes, without grace, the
worker node that runs the process whose pid `TEMP_DIR/remove` names (as a lost machine), writes
that pid and the time (or the error) to `TEMP_DIR/removed`, then adds a fresh node with the same
label in its place.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

NODE_CPUS = 2
# the GCS marks a node dead after 5 failed checks a second apart (Ray's defaults: 3 s apart,
# from 5 s after start), so a removed node's work moves on in seconds, not 20
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 5000,  # a slow live node on 2 busy cores is not a dead one
    "health_check_failure_threshold": 5,
}


def main(temp_dir: Path, workers: int) -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported
    # cluster_utils records the head's address in Ray's default temp dir (/tmp/ray), where a
    # later `ray.init()` on this machine would find it: keep it in this cluster's own
    os.environ["RAY_TMPDIR"] = str(temp_dir)
    (temp_dir / "ray").mkdir(exist_ok=True)
    from ray.cluster_utils import Cluster

    head = {
        "num_cpus": 0,
        "include_dashboard": False,  # nothing here reads Ray's state API; not one more server
        "temp_dir": str(temp_dir),
        "_system_config": HEALTH_CHECKS,
    }
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=head)

    def stop(signum: int, frame: Any) -> None:
        cluster.shutdown()
        sys.exit(0)

    labels: dict[str, Any] = {}  # label → its node
    started = itertools.count()  # nodes started, for their temp dirs' names

    def add(label: str, wait: bool) -> None:
        # each node its own temp dir, as each machine of a real cluster has (short: Ray's
        # socket paths are limited to 107 characters)
        own = temp_dir / f"n{next(started)}"
        labels[label] = cluster.add_node(
            wait=wait, num_cpus=NODE_CPUS, resources={label: 1}, temp_dir=str(own)
        )
        _write(temp_dir / "nodes.json", json.dumps({k: n.node_id for k, n in labels.items()}))

    def remove(signum: int, frame: Any) -> None:
        pid = int((temp_dir / "remove").read_text())
        label = None
        try:
            node = _node_running(cluster, pid)
            label = next(k for k, n in labels.items() if n is node)
            cluster.remove_node(node, allow_graceful=False)
            done = json.dumps({"pid": pid, "time": time.time(), "label": label})
        except Exception as e:  # told to the test, which fails on it; the cluster stays up
            done = json.dumps({"error": repr(e)})
        _write(temp_dir / "removed", done)
        if label is not None:  # a fresh machine in its place; the search does not wait for it
            add(label, wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, remove)
    for i in range(workers):
        add(f"node-{i}", wait=True)
    cluster.wait_for_nodes(timeout=120)  # 2 slow cores: Ray's 30 s default is tight
    _write(temp_dir / "address", cluster.address)
    while True:
        signal.pause()


def _write(path: Path, text: str) -> None:
    """Whole or not at all: the test polls for these files."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.rename(path)


def _node_running(cluster: Any, pid: int) -> Any:
    """The worker node whose raylet started `pid` (a node's workers are its raylet's children)."""
    import psutil
    from ray._private import ray_constants

    ancestors = {p.pid for p in psutil.Process(pid).parents()}
    for node in cluster.worker_nodes:
        raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
        if raylet in ancestors:
            return node
    raise LookupError(f"no worker node runs pid {pid}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))

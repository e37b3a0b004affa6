"""A Ray cluster of several nodes on this machine, as Ray's own suites simulate one
(`ray.cluster_utils.Cluster`), run as its own process so that a test stops it by process group.

`python tests/multinode_cluster.py TEMP_DIR WORKERS`: a head with no CPUs (as the launcher
configs' head), WORKERS 2-CPU worker nodes, all on 127.0.0.1 in single-machine mode (else Ray
rewrites 127.0.0.1 to the routable address and drivers cannot reach the GCS); writes
`TEMP_DIR/address` once every node is up, and shuts the cluster down on SIGTERM. On SIGUSR1 it
removes, without grace, the worker node that runs the process whose pid `TEMP_DIR/remove` names
(as a lost machine), adds a fresh node in its place and writes that pid (or the error) to
`TEMP_DIR/removed`.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

NODE_CPUS = 2


def main(temp_dir: Path, workers: int) -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported
    # cluster_utils records the head's address in Ray's default temp dir (/tmp/ray), where a
    # later `ray.init()` on this machine would find it: keep it in this cluster's own
    os.environ["RAY_TMPDIR"] = str(temp_dir)
    (temp_dir / "ray").mkdir(exist_ok=True)
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 0, "include_dashboard": False, "temp_dir": str(temp_dir)}
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=head)

    def stop(signum: int, frame: Any) -> None:
        cluster.shutdown()
        sys.exit(0)

    def remove(signum: int, frame: Any) -> None:
        pid = int((temp_dir / "remove").read_text())
        try:
            cluster.remove_node(_node_running(cluster, pid), allow_graceful=False)
            cluster.add_node(num_cpus=NODE_CPUS, temp_dir=str(temp_dir))
            done = str(pid)
        except Exception as e:  # told to the test, which fails on it; the cluster stays up
            done = f"error: {e!r}"
        (temp_dir / "removed").write_text(done)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, remove)
    for _ in range(workers):
        cluster.add_node(num_cpus=NODE_CPUS, temp_dir=str(temp_dir))
    cluster.wait_for_nodes()
    (temp_dir / "address.part").write_text(cluster.address)
    (temp_dir / "address.part").rename(temp_dir / "address")
    while True:
        signal.pause()


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

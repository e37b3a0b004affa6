"""A Ray cluster of several nodes on this machine, as Ray's own suites simulate one
(`ray.cluster_utils.Cluster`), run as its own process so that a test stops it by process group.

`python tests/multinode_cluster.py TEMP_DIR WORKERS`: a head with no CPUs (as the launcher
configs' head), WORKERS 2-CPU worker nodes, all on 127.0.0.1 in single-machine mode (else Ray
rewrites 127.0.0.1 to the routable address and drivers cannot reach the GCS); writes
`TEMP_DIR/address` once every node is up, and shuts the cluster down on SIGTERM. On SIGUSR1 it
removes, without grace, the worker node that runs the process whose pid `TEMP_DIR/remove` names
(as a lost machine), writes that pid and the time (or the error) to `TEMP_DIR/removed`, then
adds a fresh node in its place.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
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
            done = json.dumps({"pid": pid, "time": time.time()})
        except Exception as e:  # told to the test, which fails on it; the cluster stays up
            done = json.dumps({"error": repr(e)})
        (temp_dir / "removed.part").write_text(done)
        (temp_dir / "removed.part").rename(temp_dir / "removed")
        # a fresh machine in its place; the search does not wait for it (the nodes left fit it)
        cluster.add_node(wait=False, num_cpus=NODE_CPUS, temp_dir=str(temp_dir))

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, remove)
    for _ in range(workers):
        cluster.add_node(num_cpus=NODE_CPUS, temp_dir=str(temp_dir))
    cluster.wait_for_nodes(timeout=120)  # 2 slow cores: Ray's 30 s default is tight
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

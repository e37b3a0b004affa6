"""A Ray cluster of several nodes on this machine, as Ray's own suites simulate one
(`ray.cluster_utils.Cluster`), run as its own process so that a test stops it by process group.

`python tests/multinode_cluster.py TEMP_DIR WORKERS`: a head with no CPUs (as the launcher
configs' head), WORKERS 2-CPU worker nodes, all on 127.0.0.1 in single-machine mode (else Ray
rewrites 127.0.0.1 to the routable address and drivers cannot reach the GCS); writes
`TEMP_DIR/address` once every node is up, and shuts the cluster down on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any


def main(temp_dir: Path, workers: int) -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 0, "include_dashboard": False, "temp_dir": str(temp_dir)}
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=head)

    def stop(signum: int, frame: Any) -> None:
        cluster.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    for _ in range(workers):
        cluster.add_node(num_cpus=2, temp_dir=str(temp_dir))
    cluster.wait_for_nodes()
    (temp_dir / "address.part").write_text(cluster.address)
    (temp_dir / "address.part").rename(temp_dir / "address")
    while True:
        signal.pause()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))

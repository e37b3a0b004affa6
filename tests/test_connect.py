"""Which variables Ray gets before it is imported, and that the CLI's route keeps a local Ray on
127.0.0.1 through them alone (no private call: Ray is imported after they are set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cluster.connect import (
    SINGLE_MACHINE_ENV,
    _set_single_machine_mode,
    ray_environment,
    ray_variables,
    single_machine,
)

ROOT = Path(__file__).resolve().parent.parent


def test_a_local_run_and_a_head_on_loopback_are_single_machine() -> None:
    assert ray_variables(None) == {SINGLE_MACHINE_ENV: "0"}
    assert ray_variables("127.0.0.1:6379") == {SINGLE_MACHINE_ENV: "0"}
    assert ray_variables("localhost:6379") == {SINGLE_MACHINE_ENV: "0"}


@pytest.mark.parametrize("address", ["auto", "ray://127.0.0.1:10001", "ray://10.0.0.10:10001"])
def test_an_address_that_does_not_say_where_leaves_the_mode_alone(address: str) -> None:
    """Ray's own lookup or a client URL: a user's RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER stays."""
    assert single_machine(address) is None and ray_variables(address) == {}


def test_a_bracketed_ipv6_loopback_is_single_machine() -> None:
    assert single_machine("[::1]:6379") is True


def test_attaching_elsewhere_sets_nothing_and_never_a_token_mode() -> None:
    """Ray's rule: the client presents a token only when the user set RAY_AUTH_MODE=token, so
    a cluster without token auth is never sent one (issue 31: that broke every trial)."""
    assert ray_variables("10.0.0.10:6379") == {}


def test_the_variables_last_for_the_block_only(monkeypatch) -> None:
    """The CLI's wrapper leaves a process (a test calling `main`) as it found it."""
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # Ray not imported yet
    monkeypatch.delenv(SINGLE_MACHINE_ENV, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_environment():
        assert os.environ[SINGLE_MACHINE_ENV] == "0"
    assert SINGLE_MACHINE_ENV not in os.environ


def test_after_ray_is_imported_the_wrapper_sets_nothing(monkeypatch) -> None:
    """Ray read the variable already: `ensure_ray` switches the mode instead."""
    import ray  # noqa: F401

    monkeypatch.delenv(SINGLE_MACHINE_ENV, raising=False)
    with ray_environment():
        assert SINGLE_MACHINE_ENV not in os.environ


def test_a_ray_imported_first_is_switched_both_ways(monkeypatch) -> None:
    """Local, then attaching elsewhere in the same process: single-machine mode on, then off
    again (left on, the driver would give a remote cluster 127.0.0.1 as its address)."""
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.delenv(SINGLE_MACHINE_ENV, raising=False)
    _set_single_machine_mode(True)
    assert ray_constants.ENABLE_RAY_CLUSTER is False and os.environ[SINGLE_MACHINE_ENV] == "0"
    _set_single_machine_mode(False)
    assert ray_constants.ENABLE_RAY_CLUSTER is True and SINGLE_MACHINE_ENV not in os.environ


def test_a_users_own_cluster_mode_is_kept_when_attaching_elsewhere(monkeypatch) -> None:
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setenv(SINGLE_MACHINE_ENV, "1")
    _set_single_machine_mode(False)
    assert ray_constants.ENABLE_RAY_CLUSTER is True and os.environ[SINGLE_MACHINE_ENV] == "1"


PUBLIC_ROUTE = """
import json, sys
import orchestrator.cli  # the CLI's own imports leave Ray for its handlers
assert "ray" not in sys.modules
import cluster.ray_compat as compat
from cluster.connect import ensure_ray, ray_environment

def refuse(on):
    raise AssertionError("the private switch ran")

compat.set_single_machine_mode = refuse
with ray_environment():  # as the CLI does, before anything imports Ray
    import ray

    ensure_ray(num_cpus=1)
    print(json.dumps(sorted({n["NodeManagerAddress"] for n in ray.nodes()})))
    ray.shutdown()
"""


@pytest.mark.slow
def test_the_clis_route_keeps_a_local_ray_on_loopback_without_private_calls(tmp_path) -> None:
    """Without the variable Ray 2.60 gives the node the host's routable address (RAY_NOTES:
    `_node_ip_address` alone does not keep it), so a route that lost it fails here. The
    address a dead cluster left in Ray's temp dir is not attached to: a local run is new."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    try:
        done = subprocess.run(
            [sys.executable, "-c", PUBLIC_ROUTE],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
            env={**env, "HOME": str(tmp_path), "RAY_TMPDIR": str(ray_tmp)},
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["127.0.0.1"]

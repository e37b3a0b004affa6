"""Which variables Ray gets before it is imported, and that the CLI's route keeps a local Ray on
127.0.0.1 through them alone (no private call: Ray is imported after they are set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.connect import AUTH_MODE_ENV, SINGLE_MACHINE_ENV, ray_environment, ray_variables

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_token(monkeypatch, tmp_path: Path) -> Path:
    """A client with no token anywhere Ray looks: the home is empty, the variables unset."""
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", AUTH_MODE_ENV, "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_a_local_run_is_single_machine_and_sets_no_auth_mode(no_token) -> None:
    assert ray_variables(None) == {SINGLE_MACHINE_ENV: "0"}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_head_on_this_machines_loopback_stays_there(no_token, host: str) -> None:
    assert ray_variables(f"{host}:6379") == {SINGLE_MACHINE_ENV: "0"}


def test_attaching_elsewhere_changes_nothing_without_a_token(no_token) -> None:
    assert ray_variables("10.0.0.10:6379") == {}


@pytest.mark.parametrize("where", ["variable", "path", "home"])
def test_attaching_with_a_token_presents_it(no_token, monkeypatch, where: str) -> None:
    token = no_token / "token"
    token.write_text("t" * 32)
    if where == "variable":
        monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 32)
    elif where == "path":
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    else:
        (no_token / ".ray").mkdir()
        token.rename(no_token / ".ray" / "auth_token")
    assert ray_variables("10.0.0.10:6379") == {AUTH_MODE_ENV: "token"}


def test_a_token_path_to_nothing_is_no_token(no_token, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(no_token / "absent"))
    assert ray_variables("10.0.0.10:6379") == {}


def test_the_users_own_auth_mode_is_kept(no_token, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 32)
    monkeypatch.setenv(AUTH_MODE_ENV, "disabled")
    assert ray_variables("10.0.0.10:6379") == {}


def test_the_variables_last_for_the_block_only(no_token, monkeypatch) -> None:
    """The CLI's wrapper leaves a process (a test calling `main`) as it found it: a mode left
    behind would make the next local Ray's own processes disagree with its driver."""
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # Ray not imported yet
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 32)
    monkeypatch.delenv(SINGLE_MACHINE_ENV, raising=False)
    with ray_environment("127.0.0.1:6379"):
        assert os.environ[AUTH_MODE_ENV] == "token" and os.environ[SINGLE_MACHINE_ENV] == "0"
    assert AUTH_MODE_ENV not in os.environ and SINGLE_MACHINE_ENV not in os.environ


def test_after_ray_is_imported_the_wrapper_sets_nothing(no_token, monkeypatch) -> None:
    """Ray read them already; `ensure_ray` makes up for it, in this process, for good."""
    import ray  # noqa: F401

    monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 32)
    with ray_environment("127.0.0.1:6379"):
        assert AUTH_MODE_ENV not in os.environ


PUBLIC_ROUTE = """
import json, sys
import cluster.ray_compat as compat
from cluster.connect import ensure_ray, ray_environment

def refuse(variables):
    raise AssertionError("the private fallback ran")

compat.apply_import_time_variables = refuse
with ray_environment():  # as the CLI does, before anything imports Ray
    import ray

    ensure_ray(num_cpus=1)
    print(json.dumps(sorted({n["NodeManagerAddress"] for n in ray.nodes()})))
    ray.shutdown()
"""


def test_the_clis_route_keeps_a_local_ray_on_loopback_without_private_calls(tmp_path) -> None:
    """Without the variable Ray 2.60 gives the node the host's routable address (RAY_NOTES:
    `_node_ip_address` alone does not keep it), so a route that lost it fails here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", PUBLIC_ROUTE],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**env, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["127.0.0.1"]

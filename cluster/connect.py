"""Attaching to a Ray cluster, or starting a local Ray that listens on 127.0.0.1 only.

The address is picked as Ray's own tools pick it (`--address`, then `RAY_ADDRESS`); attaching
presents the cluster's token when one is available; a cluster that cannot be reached or
refuses the token is one line naming the address. Both work through the variables Ray
documents, set before Ray is imported (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`, `RAY_AUTH_MODE`);
only a process that imported Ray earlier needs the private calls in `cluster.ray_compat`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from nas_core.environ import environment
from nas_core.errors import ProxylessError, first_line

# Ray's single-machine mode: read at `import ray`, by this process and its children
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's authentication mode: read at `import ray`; attaching presents a token only when "token"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def cluster_address(address: str | None = None) -> str | None:
    """The cluster to attach to, as Ray's own tools pick it: `--address`, then `RAY_ADDRESS`.

    None means a new local instance (or the one this process already started).
    """
    if address:
        return address
    if _ray_started():
        return None
    return os.environ.get("RAY_ADDRESS") or None


def _ray_started() -> bool:
    ray = sys.modules.get("ray")  # not imported yet: the variables below can still reach it
    return ray is not None and ray.is_initialized()


def token_available() -> bool:
    """Whether this client has a Ray token to present, where Ray looks for one (2.60):
    `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` names, or `~/.ray/auth_token`."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return (
        Path(path).expanduser().is_file()
        if path
        else (Path.home() / ".ray" / "auth_token").is_file()
    )


def ray_variables(address: str | None) -> dict[str, str]:
    """The variables Ray must read at import for this run: a new local instance (or a head on
    this machine's loopback) stays on 127.0.0.1, and attaching with a token presents it, as
    `ray start` does (Ray enables that itself only for `address="auto"`). A mode the user set
    is kept."""
    host = None if address is None else address.rpartition(":")[0]
    variables = {}
    if address is None or host in LOOPBACK_HOSTS:
        variables[SINGLE_MACHINE_ENV] = "0"
    if address is not None and AUTH_MODE_ENV not in os.environ and token_available():
        variables[AUTH_MODE_ENV] = "token"
    return variables


@contextlib.contextmanager
def ray_environment(address: str | None = None) -> Iterator[None]:
    """The variables Ray reads at import, for a run at `address` (None: local), set for the
    block when Ray is not imported yet: the CLI wraps each command in it, so that `ensure_ray`
    needs no private call. Afterwards each is what it was (Ray's processes keep theirs)."""
    ahead = "ray" not in sys.modules  # else Ray read them already: `ensure_ray` makes up for it
    with environment(ray_variables(cluster_address(address)) if ahead else {}):
        yield


def ensure_ray(
    address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True
) -> None:
    """Attach to `address` or `RAY_ADDRESS`, else start a local Ray bound to 127.0.0.1.

    Attaching presents the cluster's token when one is available (`RAY_AUTH_TOKEN`,
    `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`), as `ray start` does; a cluster that cannot be
    reached or refuses the token is one line naming the address. Only a new local instance is
    kept on loopback (token auth stays on, Ray's default).
    """
    if _ray_started():
        return
    address = cluster_address(address)
    if address is not None:
        host, _, port = address.rpartition(":")
        if "://" not in address and port.isdigit():
            _require_listening(address, host, int(port))
    _set_ray_variables(ray_variables(address))
    import ray

    if address is None:  # single-machine mode: the node's address is 127.0.0.1
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
        return
    from ray.exceptions import AuthenticationError

    try:
        ray.init(address=address, log_to_driver=log_to_driver)
    # ValueError: an address Ray cannot use (e.g. the dashboard's http://…:8265);
    # RuntimeError: a cluster on another Ray version
    except (ConnectionError, AuthenticationError, ValueError, RuntimeError) as e:
        # Ray wraps the GCS's refusal of the token in a ConnectionError
        refused = isinstance(e, AuthenticationError) or "InvalidAuthToken" in str(e.__cause__)
        first = first_line(e)
        what = (
            "the cluster refused this client's token: put the cluster's token in RAY_AUTH_TOKEN "
            "or ~/.ray/auth_token"
            if refused
            else f"{first}; check the address (the head's GCS host:port, not the dashboard's "
            "URL) and that the cluster is up (`ray status` on the head)"
        )
        raise ProxylessError(f"cannot attach to the Ray cluster at {address}: {what}") from None


def _set_ray_variables(variables: dict[str, str]) -> None:
    """`variables` for this process and every Ray process it starts; a Ray imported before they
    were set (a Python caller's, not the CLI's: see `ray_environment`) is made to act on them."""
    late = "ray" in sys.modules and any(os.environ.get(k) != v for k, v in variables.items())
    os.environ.update(variables)
    if late:
        from cluster.ray_compat import apply_import_time_variables

        apply_import_time_variables(variables)


def _require_listening(address: str, host: str, port: int, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at the GCS address (`ray.init` retries for minutes)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise ProxylessError(
            f"cannot attach to the Ray cluster at {address}: nothing answered "
            f"({e.strerror or type(e).__name__}); check the address (host:port of the head's GCS, "
            "e.g. 10.0.0.10:6379) and that the cluster is up (`ray status` on the head)"
        ) from None

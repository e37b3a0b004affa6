"""Attaching to a Ray cluster, or starting a local Ray that listens on 127.0.0.1 only.

The address is picked as Ray's own tools pick it (`--address`, then `RAY_ADDRESS`). A local
Ray stays on 127.0.0.1 through Ray's single-machine mode, a variable Ray reads when it is
imported: the CLI sets it first (`ray_environment`); only a process that imported Ray earlier
needs the private switch in `cluster.ray_compat`. Attaching follows Ray's documented token
rules, as `ray job submit` does: the client presents a token when `RAY_AUTH_MODE=token`, so a
cluster without token auth is never sent one; a cluster that cannot be reached, wants a token
or refuses it is one line naming the address.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from nas_core.environ import environment
from nas_core.errors import ProxylessError, first_line

# Ray's single-machine mode when "0": read at `import ray`, by this process and its children
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV = "RAY_AUTH_MODE"  # "token": attaching presents the client's token
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


def single_machine(address: str | None) -> bool | None:
    """Whether a run at `address` (None: a new local instance) is all on this machine's
    loopback, where Ray must run in single-machine mode to stay there; None where the address
    does not say (Ray's own "auto" lookup, a `scheme://` URL): the mode is then left as it is."""
    if address is None:
        return True
    if address == "auto" or "://" in address:
        return None
    return address.rpartition(":")[0].strip("[]") in LOOPBACK_HOSTS


def ray_variables(address: str | None) -> dict[str, str]:
    """The variables Ray must read at import for a run at `address`: single-machine mode for a
    new local instance or a head on this machine's loopback, else none."""
    return {SINGLE_MACHINE_ENV: "0"} if single_machine(address) else {}


@contextlib.contextmanager
def ray_environment(address: str | None = None) -> Iterator[None]:
    """`ray_variables(address)` set for the block when Ray is not imported yet: the CLI wraps
    each command in it, so that Ray reads them at import and `ensure_ray`, called inside,
    needs no private call. Afterwards each is what it was (Ray's processes keep theirs)."""
    ahead = "ray" not in sys.modules  # else Ray read them already: `ensure_ray` makes up for it
    with environment(ray_variables(cluster_address(address)) if ahead else {}):
        yield


def ensure_ray(
    address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True
) -> None:
    """Attach to `address` or `RAY_ADDRESS`, else start a local Ray bound to 127.0.0.1.

    Attaching presents the client's token (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
    `~/.ray/auth_token`) when `RAY_AUTH_MODE=token`, Ray's documented rule; a cluster that
    cannot be reached, wants a token or refuses it is one line naming the address. A new local
    instance is kept on loopback, with Ray's default token auth on. Run inside
    `ray_environment` when Ray is imported there, else a private switch is needed.
    """
    if _ray_started():
        return
    address = cluster_address(address)
    if address is not None:
        host, _, port = address.rpartition(":")
        if "://" not in address and port.isdigit():
            _require_listening(address, host, int(port))
    mode = single_machine(address)
    if mode is not None:
        _set_single_machine_mode(mode)
    import ray

    if address is None:  # single-machine mode: the node's address is 127.0.0.1
        # "local": a new instance, even where `ray start` or a test cluster left its address
        # in Ray's temp dir (`ray.init()` would attach to that, alive or not)
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=log_to_driver,
        )
        return
    from ray.exceptions import AuthenticationError

    try:
        ray.init(address=address, log_to_driver=log_to_driver)
    # ValueError: an address Ray cannot use (e.g. the dashboard's http://…:8265);
    # RuntimeError: a cluster on another Ray version
    except (ConnectionError, AuthenticationError, ValueError, RuntimeError) as e:
        # Ray wraps the GCS's refusal of the token in a ConnectionError
        refused = isinstance(e, AuthenticationError) or "InvalidAuthToken" in str(e.__cause__)
        what = (
            _token_advice()
            if refused
            else f"{first_line(e)}; check the address (the head's GCS host:port, not the "
            "dashboard's URL) and that the cluster is up (`ray status` on the head)"
        )
        raise ProxylessError(f"cannot attach to the Ray cluster at {address}: {what}") from None


def _token_advice() -> str:
    """What to do about a cluster that wants a token: send one, or the right one."""
    where = "the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token"
    if os.environ.get(AUTH_MODE_ENV, "").lower() == "token":
        return f"the cluster refused this client's token: put {where}"
    return (
        f"the cluster wants a token: set {AUTH_MODE_ENV}=token (as for `ray job submit`) "
        f"and put {where}"
    )


def _set_single_machine_mode(on: bool) -> None:
    """Ray's single-machine mode on or off, for this process and every Ray process it starts.
    A Ray imported before the variable was set as wanted (a Python caller's; the CLI sets it
    first, see `ray_environment`) is switched through `cluster.ray_compat`."""
    imported = "ray" in sys.modules
    if on:
        late = imported and os.environ.get(SINGLE_MACHINE_ENV) != "0"
        os.environ[SINGLE_MACHINE_ENV] = "0"
    else:  # attaching elsewhere after a local run of this process: off again
        late = imported and os.environ.get(SINGLE_MACHINE_ENV) == "0"
        if os.environ.get(SINGLE_MACHINE_ENV) == "0":
            del os.environ[SINGLE_MACHINE_ENV]
    if late:
        from cluster.ray_compat import set_single_machine_mode

        set_single_machine_mode(on)


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

"""Attaching to a Ray cluster, or starting a local Ray that listens on 127.0.0.1 only.

The address is picked as Ray's own tools pick it (`--address`, then `RAY_ADDRESS`); attaching
presents the cluster's token when one is available; a cluster that cannot be reached or
refuses the token is one line naming the address. The private Ray calls this needs are in
`cluster.ray_compat`.
"""

from __future__ import annotations

import os

from nas_core.errors import ProxylessError, first_line


def cluster_address(address: str | None = None) -> str | None:
    """The cluster to attach to, as Ray's own tools pick it: `--address`, then `RAY_ADDRESS`.

    None means a new local instance (or the one this process already started).
    """
    import ray

    if address:
        return address
    if ray.is_initialized():
        return None
    return os.environ.get("RAY_ADDRESS") or None


def ensure_ray(
    address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True
) -> None:
    """Attach to `address` or `RAY_ADDRESS`, else start a local Ray bound to 127.0.0.1.

    Attaching presents the cluster's token when one is available (`RAY_AUTH_TOKEN`,
    `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`), as `ray start` does; a cluster that cannot be
    reached or refuses the token is one line naming the address. Only a new local instance is
    kept on loopback (token auth stays on, Ray's default).
    """
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    from cluster.ray_compat import init_local_ray_on_loopback, keep_local_ray_on_loopback

    if address is None:
        init_local_ray_on_loopback(
            num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver
        )
        return
    from ray.exceptions import AuthenticationError

    from cluster.ray_compat import enable_token_auth_if_available

    host, _, port = address.rpartition(":")
    if "://" not in address and port.isdigit():
        _require_listening(address, host, int(port))
        if host in ("127.0.0.1", "localhost", "::1"):
            keep_local_ray_on_loopback()  # a head on this machine's loopback: Ray keeps it there
    enable_token_auth_if_available()
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

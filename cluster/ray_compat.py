"""Every private Ray API the cluster layer uses, each with the reason no public one would do.

Read from Ray 2.60 (the version `pyproject.toml` pins); a Ray upgrade starts here. Imports are
inside the functions so that importing this module does not import Ray's Train internals; the
classes that must subclass a private base are built on first use. Nothing outside this module
and `orchestrator/ray_compat.py` may import `ray._private`, `ray.*._internal` or an underscored
Ray name (`tests/test_layering.py` fails otherwise).
"""

from __future__ import annotations

import functools
import os
from typing import Any

RAY_VERSION_READ = "2.60"
# the documented variable (Ray Train's v2 constants): Train's own collectives' timeout
COLLECTIVE_TIMEOUT_ENV = "RAY_TRAIN_COLLECTIVE_TIMEOUT_S"


def max_cluster_resources() -> dict[str, float]:
    """The autoscaler's configured maximum resources ({} on a fixed cluster).

    Ray Train reads the same private state to decide whether a request can ever be met; the
    public `ray.cluster_resources()` holds only what is up now."""
    from ray._private.state import state

    return dict(state.get_max_resources_from_cluster_config() or {})


def enable_token_auth_if_available() -> None:
    """Present `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token` when attaching,
    as `ray start` does: `ray.init(address=…)` does not read them itself in 2.60."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def keep_local_ray_on_loopback() -> None:
    """Make a local Ray bind its GCS, raylet and workers to 127.0.0.1.

    Ray 2.60 replaces a node address of 127.0.0.1 with the host's routable IP and listens there
    unless "clusters" are off (its desktop mode). The switch is read at `import ray`, and Ray is
    often imported before we know the run is local, so the module constant is set as well as
    the variable its child processes read."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def init_local_ray_on_loopback(**init_kwargs: Any) -> None:
    """`ray.init` of a new local instance whose every port is on 127.0.0.1: the node address
    is `ray.init`'s underscored `_node_ip_address`, the only way to set it from a driver."""
    import ray

    keep_local_ray_on_loopback()
    ray.init(_node_ip_address="127.0.0.1", **init_kwargs)


def collective_timeout_error() -> type[BaseException]:
    """What Ray Train's report barrier raises when a rank never joins it: not exported in 2.60."""
    from ray.train.v2._internal.exceptions import CollectiveTimeoutError

    return CollectiveTimeoutError


def worker_group_startup_timeout_error() -> type[BaseException]:
    """What `fit()` raises when the workers' resources never come: not exported in 2.60."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    return WorkerGroupStartupTimeoutError


def torch_backend() -> tuple[type, Any]:
    """(Ray Train's torch backend class, its per-worker env setter: LOCAL_RANK, RANK, …).

    The loopback process group replaces only the backend's start and shutdown; subclassing the
    private `_TorchBackend` keeps the rest of its behaviour (CUDA_VISIBLE_DEVICES shared among
    a node's workers, the training-start hook) exactly as Ray Train's own."""
    from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

    return _TorchBackend, _set_torch_distributed_env_vars


def failure_policy_classes() -> tuple[type, Any]:
    """(Ray Train's default failure policy, its decision enum): private in 2.60."""
    from ray.train.v2._internal.execution.failure_handling import (
        DefaultFailurePolicy,
        FailureDecision,
    )

    return DefaultFailurePolicy, FailureDecision


@functools.cache
def torch_trainer_with_policy() -> type:
    """A `TorchTrainer` whose controller uses `self.failure_policy()` and runs inside
    `self.controller_environ()`.

    Ray 2.60 builds the failure policy inside `fit()` from the `FailureConfig` alone, with no
    public setting for another one; its private `_initialize_and_run_controller` takes the
    policy as a keyword, and reads the collective timeout from the environment when it runs."""
    from ray.train.torch import TorchTrainer

    class PolicyTorchTrainer(TorchTrainer):
        def failure_policy(self) -> Any:
            raise NotImplementedError

        def controller_environ(self) -> Any:
            raise NotImplementedError

        def _initialize_and_run_controller(self, **controller_init_kwargs: Any) -> Any:
            with self.controller_environ():
                return super()._initialize_and_run_controller(
                    **{**controller_init_kwargs, "failure_policy": self.failure_policy()}
                )

    return PolicyTorchTrainer

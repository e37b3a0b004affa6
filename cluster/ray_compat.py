"""Every private Ray API the cluster layer uses, each with the reason no public one would do.

Read from Ray 2.60 (the version `pyproject.toml` pins); a Ray upgrade starts here. Imports are
inside the functions so that importing this module does not import Ray's Train internals; the
classes that must subclass a private base are built on first use. Nothing outside this module
and `orchestrator/ray_compat.py` may import `ray._private`, `ray.*._internal` or an underscored
Ray name (`tests/test_layering.py` fails otherwise).
"""

from __future__ import annotations

import functools
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


def set_single_machine_mode(on: bool) -> None:
    """Ray's single-machine mode on or off in a process that imported Ray already.

    Ray 2.60 reads `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` into the module constant
    `ray_constants.ENABLE_RAY_CLUSTER` when it is imported, with no public way to read it again;
    the CLI sets the variable first, a Python caller may have imported Ray already."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = not on


def collective_timeout_error() -> type[BaseException]:
    """What Ray Train's report barrier raises when a rank never joins it: not exported in 2.60."""
    from ray.train.v2._internal.exceptions import CollectiveTimeoutError

    return CollectiveTimeoutError


def worker_group_startup_timeout_error() -> type[BaseException]:
    """What `fit()` raises when the workers' resources never come: not exported in 2.60."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    return WorkerGroupStartupTimeoutError


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

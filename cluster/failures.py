"""How a search's Train run treats a failed worker: a user error ends the run, the rest retry.

Ray Train retries every worker failure up to `FailureConfig.max_failures` times from the last
checkpoint. That is right for a lost node or a killed process, and wrong for a user error (a
NaN loss, a table that cannot price the space): every retry fails the same way, and the user
waits for all of them and then reads a wrapped traceback. A `ProxylessError` raised on any rank
therefore ends the run at once (`UserErrorsEndTheRun`) and reaches the caller as that same
error (`user_error`), without parsing any traceback text.

Ray 2.60 builds the failure policy inside `fit()` from the `FailureConfig` alone, with no public
setting for another one; `SearchTrainer` passes ours to the controller it starts (through
`cluster.ray_compat`, where the private override lives). It also gives
Ray Train's own collectives (the barrier in `ray.train.report`), which wait forever by default,
the run's sync timeout: Ray reads it from `RAY_TRAIN_COLLECTIVE_TIMEOUT_S` when the controller
starts, so the variable is set for that call and restored after it.
"""

from __future__ import annotations

from typing import Any

from cluster.ray_compat import (
    COLLECTIVE_TIMEOUT_ENV,
    failure_policy_classes,
    torch_trainer_with_policy,
)
from nas_core.environ import environment
from nas_core.errors import ProxylessError

DefaultFailurePolicy, FailureDecision = failure_policy_classes()


def user_error(error: BaseException) -> ProxylessError | None:
    """The `ProxylessError` the lowest failed rank raised, if a worker group failed with one."""
    failures = getattr(error, "worker_failures", None) or {}
    for rank in sorted(failures):
        if isinstance(failures[rank], ProxylessError):
            return failures[rank]
    return None


class UserErrorsEndTheRun(DefaultFailurePolicy):
    """Ray Train's default policy, except that a worker's `ProxylessError` is never retried."""

    def make_decision(self, training_failed_error: Any) -> FailureDecision:
        if user_error(training_failed_error) is not None:
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class SearchTrainer(torch_trainer_with_policy()):
    """A `TorchTrainer` whose controller decides retries with `UserErrorsEndTheRun` and whose
    own collectives give up after `collective_timeout_s`."""

    def __init__(self, *args: Any, collective_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collective_timeout_s = collective_timeout_s

    def failure_policy(self) -> UserErrorsEndTheRun:
        return UserErrorsEndTheRun(self.run_config.failure_config)

    def controller_environ(self) -> Any:
        return environment({COLLECTIVE_TIMEOUT_ENV: str(self.collective_timeout_s)})

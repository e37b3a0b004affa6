"""Architecture search strategies, each split into *signal* and *apply*.

`signal` runs where the data is (the local searcher, or each Ray Train worker) and returns a
small picklable object, which `reduce`s over the ranks in one collective (Proxyless-G averages
its gate gradients, REINFORCE gathers its samples); `apply` runs where α is owned (the
searcher, or the architecture actor) and turns that one reduced signal into one α update. The
same functions therefore serve one process and a cluster.
"""

from nas_core.strategy.base import (
    STRATEGIES,
    Signal,
    StrategyConfig,
    create_strategy,
    make_arch_optimizer,
)
from nas_core.strategy.gradient import GradientSignal, GradientStrategy
from nas_core.strategy.reinforce import ReinforceSignal, ReinforceStrategy

__all__ = [
    "STRATEGIES",
    "GradientSignal",
    "GradientStrategy",
    "ReinforceSignal",
    "ReinforceStrategy",
    "Signal",
    "StrategyConfig",
    "create_strategy",
    "make_arch_optimizer",
]

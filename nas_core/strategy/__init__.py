"""Architecture search strategies, each split into *signal* and *apply*.

`signal` runs where the data is (the local searcher, or each Ray Train worker) and returns a
small picklable object; `apply` runs where α is owned (the searcher, or the architecture actor)
and turns the signals of one arch step into one α update. The same two functions therefore
serve one process and a cluster, and the cluster's aggregate is just a list of signals.
"""

from nas_core.strategy.base import STRATEGIES, StrategyConfig, create_strategy, make_arch_optimizer
from nas_core.strategy.gradient import GradientSignal, GradientStrategy
from nas_core.strategy.reinforce import ReinforceSignal, ReinforceStrategy

__all__ = [
    "STRATEGIES",
    "GradientSignal",
    "GradientStrategy",
    "ReinforceSignal",
    "ReinforceStrategy",
    "StrategyConfig",
    "create_strategy",
    "make_arch_optimizer",
]

"""Optimizers for large-batch training, one per module, all reachable through a registry.

Importing this package registers the built-in presets: ``sgd``, ``nesterov``, ``lars``, ``lamb``,
``nlcg``, ``kfac``, ``rmsprop``.
"""

from training.optim.groups import param_groups
from training.optim.kfac import KFAC
from training.optim.lamb import LAMB
from training.optim.lars import LARS
from training.optim.nlcg import NLCG, BetaRule
from training.optim.registry import (
    OPTIMIZERS,
    OptimizerInfo,
    build_optimizer,
    get_optimizer_info,
    register_optimizer,
)
from training.optim.rmsprop import RMSPROP_INFO
from training.optim.sgd import SGD

__all__ = [
    "KFAC",
    "LAMB",
    "LARS",
    "NLCG",
    "OPTIMIZERS",
    "RMSPROP_INFO",
    "SGD",
    "BetaRule",
    "OptimizerInfo",
    "build_optimizer",
    "get_optimizer_info",
    "param_groups",
    "register_optimizer",
]

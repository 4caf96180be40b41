"""SGD with heavy-ball or Nesterov momentum: ``torch.optim.SGD`` registered as presets.

PyTorch's rule (lr outside the momentum buffer, ``v <- m v + g``, ``w <- w - lr v``) is the
one Goyal et al. 2017 (arXiv:1706.02677, §2.1 "momentum correction") recommend when the
learning rate changes during training, so it is used as is rather than re-implemented.
"""

from __future__ import annotations

import torch

from training.optim.registry import OptimizerInfo, register_optimizer

SGD = torch.optim.SGD

SGD_INFO = register_optimizer(
    OptimizerInfo(
        name="sgd",
        cls=SGD,
        defaults={"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False},
        reference="Polyak 1964 heavy ball; Goyal et al. 2017, arXiv:1706.02677",
    )
)
NESTEROV_INFO = register_optimizer(
    OptimizerInfo(
        name="nesterov",
        cls=SGD,
        defaults={"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": True},
        reference="Nesterov 1983; Sutskever et al. 2013, ICML",
    )
)

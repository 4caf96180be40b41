"""RMSProp as the EfficientNet-at-scale recipe uses it: ``torch.optim.RMSprop`` as a preset.

Tan and Le's EfficientNet training (arXiv:1905.11946) and its large-batch study
(arXiv:2011.00071) use RMSProp with decay 0.9, momentum 0.9 and epsilon 1e-3 (TensorFlow's
epsilon sits inside the square root, torch's outside: 1e-3 here is the usual translation),
warmup, then exponential decay (``--decay exponential``). PyTorch's update is used as is.
"""

from __future__ import annotations

import torch

from training.optim.registry import OptimizerInfo, register_optimizer

RMSPROP_INFO = register_optimizer(
    OptimizerInfo(
        name="rmsprop",
        cls=torch.optim.RMSprop,
        defaults={"lr": 0.016, "alpha": 0.9, "momentum": 0.9, "eps": 1e-3, "weight_decay": 0.0},
        reference="Tieleman and Hinton 2012; Tan and Le 2019, arXiv:1905.11946",
    )
)

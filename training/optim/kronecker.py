"""Kronecker factors of the Fisher for Linear and Conv2d layers, and their damped inverses.

For a layer computing ``s = W a`` at ``T`` positions per sample (``T = 1`` for a Linear layer on
a vector; the output pixels of a convolution, with ``a`` the im2col patch), K-FAC approximates
the layer's Fisher block by ``A (x) G`` with (Grosse and Martens 2016, arXiv:1602.01407, under
spatial homogeneity and uncorrelated derivatives)

* ``A = E_{i,t}[a_it a_it^T]``       mean over samples and positions,
* ``G = E_i[sum_t g_it g_it^T]``     mean over samples of the sum over positions,

where ``g_it = dL_i/ds_it`` is the per-sample gradient. The training loss is a mean over the
``N`` samples of the (local) batch, so the gradient flowing into the layer is ``g_it / N`` and
is multiplied back by ``N`` here. This is the empirical Fisher (the gradients of the training
loss itself, one backward pass per step), as in large-batch K-FAC practice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Layers K-FAC preconditions (grouped convolutions are left to the plain update).
KFAC_LAYERS = (nn.Linear, nn.Conv2d)


def supported(module: nn.Module) -> bool:
    """Whether ``module`` gets Kronecker factors (Linear, or Conv2d with ``groups=1``)."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and isinstance(module.padding, tuple)
    return isinstance(module, nn.Linear)


def input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows ``a_it``: ``(N * T, fan_in)`` (im2col for a convolution)."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(
            x,
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,  # type: ignore[arg-type]
            stride=module.stride,
        )  # (N, C*kh*kw, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def output_rows(module: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """The gradient w.r.t. the layer's output as rows ``g_it``: ``(N * T, fan_out)``."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2).reshape(-1, g.shape[1])
    return g.reshape(-1, g.shape[-1])


def factor_a(rows: torch.Tensor) -> torch.Tensor:
    """``A`` from the input rows of one batch: the mean of ``a a^T`` over all rows."""
    return rows.t() @ rows / rows.shape[0]


def factor_g(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """``G`` from the output-gradient rows of a batch of ``batch`` samples (mean loss).

    Rows are ``g_it / N``; per-sample gradients are ``N`` times that, so
    ``G = (1/N) sum_{i,t} (N g)(N g)^T = N sum_{i,t} g g^T``.
    """
    return rows.t() @ rows * batch


def pi_factor(a: torch.Tensor, g: torch.Tensor) -> float:
    """The factored-damping split ``pi = sqrt((tr A / dim A) / (tr G / dim G))`` (1 if degenerate).

    Martens and Grosse 2015 (arXiv:1503.05671) §6.3: damping ``(A + pi sqrt(l) I) (x)
    (G + sqrt(l)/pi I)`` puts the Tikhonov term where each factor's scale is.
    """
    ta = float(torch.trace(a)) / a.shape[0]
    tg = float(torch.trace(g)) / g.shape[0]
    if not (ta > 0 and tg > 0 and math.isfinite(ta / tg)):
        return 1.0
    return math.sqrt(ta / tg)


def damped_inverse(m: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(m + gamma I)^-1`` of a symmetric positive semi-definite factor.

    Cholesky first; when ``m + gamma I`` is not numerically positive definite (no damping,
    singular statistics), the symmetric eigendecomposition with eigenvalues clamped at
    ``max(gamma, eps * max eig)`` is used instead.
    """
    if not bool(torch.isfinite(m).all()):
        # Diverged statistics: no decomposition converges. A NaN preconditioner makes the
        # step NaN, so the training loop records the run as diverged instead of crashing.
        return torch.full_like(m, math.nan)
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    damped = m + gamma * eye
    chol, info = torch.linalg.cholesky_ex(damped)
    if int(info) == 0:
        return torch.cholesky_inverse(chol)
    # float64 and exactly symmetric: the eigensolver converges where float32 may not
    sym = damped.double()
    vals, vecs = torch.linalg.eigh((sym + sym.t()) / 2)
    floor = max(gamma, float(vals.max()) * torch.finfo(m.dtype).eps)
    return ((vecs / vals.clamp_min(floor)) @ vecs.t()).to(m.dtype)

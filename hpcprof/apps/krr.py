"""Kernel ridge regression over a partitioning of the training set (arXiv 1805.00569).

The training points are split into ``PARTS`` groups by k-means (KKRR: clusters as they come)
or by balanced k-means (BKRR: the same centroids, points assigned greedily by distance so
that every group holds N/p points, which balances the solves across ranks). Each group
solves its own ridge system ``(K_i + LAMBDA N_i I) alpha_i = y_i`` (Gaussian kernel,
Cholesky); a test point is predicted by the model of the group whose mean is nearest.

Data: a seeded synthetic regression set, ``CLUSTERS`` Gaussian blobs in ``DIM`` dimensions,
``y = sin(2 x_0) + x_1 cos(x_2) + noise``. Self-check: ``|MSE - MSE_exact| / MSE_exact``, the
test error against exact single-partition KRR (all N points, float64). The k-means
partitioning runs in the app's precision natively and in float64 when emulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Kernel, Region, real_dtype
from hpcprof.apps.linalg import Arith, Round
from hpcprof.results.records import Precision

DIM = 4
CLUSTERS = 4
PARTS = 4
BANDWIDTH = 1.0
LAMBDA = 1e-4
NOISE = 0.05
KMEANS_ITERATIONS = 10
TEST_POINTS = 256
METHODS = ("balanced", "kmeans")


@dataclass(frozen=True)
class Dataset:
    """Training and test points of the synthetic regression set (float64)."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def dataset(n: int, seed: int = 0) -> Dataset:
    """``n`` training and TEST_POINTS test points drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3.0, 3.0, (CLUSTERS, DIM))

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        x = centres[rng.integers(0, CLUSTERS, count)] + 0.6 * rng.standard_normal((count, DIM))
        y = np.sin(2 * x[:, 0]) + x[:, 1] * np.cos(x[:, 2]) + NOISE * rng.standard_normal(count)
        return x, y

    x, y = draw(n)
    xt, yt = draw(TEST_POINTS)
    return Dataset(x, y, xt, yt)


def kernel_matrix(a: np.ndarray, b: np.ndarray, ar: Arith) -> np.ndarray:
    """Gaussian kernel ``exp(-|a_i - b_j|^2 / (2 h^2))``, each step rounded."""
    sq = ar.r(np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :])
    d2 = ar.r(np.maximum(sq - 2 * ar.mm(a, b.T), 0))
    return ar.r(np.exp(ar.r(d2 * (-0.5 / BANDWIDTH**2))))


def kmeans(x: np.ndarray, k: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Lloyd's k-means from a farthest-point start (a seeded first point); the centroids."""
    rng = np.random.default_rng(1)
    centres = x[[int(rng.integers(len(x)))]].copy()
    while len(centres) < k:
        far = int(np.argmax(np.min(_distances(x, centres), axis=1)))
        centres = np.vstack([centres, x[far]])
    for _ in range(iterations):
        label = np.argmin(_distances(x, centres), axis=1)
        for j in range(k):
            if np.any(label == j):
                centres[j] = x[label == j].mean(axis=0)
    return centres


def _distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.sum((x[:, None, :] - centres[None, :, :]) ** 2, axis=2)


def partition(x: np.ndarray, centres: np.ndarray, method: str) -> np.ndarray:
    """Group label of every point: nearest centroid (``kmeans``), or nearest centroid with
    room left, pairs taken in order of distance, group sizes floor or ceil of N/p
    (``balanced``).

    Raises:
        ValueError: an unknown method.
    """
    dist = _distances(x, centres)
    if method == "kmeans":
        return np.argmin(dist, axis=1)
    if method != "balanced":
        raise ValueError(f"partitioning {method!r}: must be one of {', '.join(METHODS)}")
    k = len(centres)
    base, extra = divmod(len(x), k)  # sizes base or base + 1, ``extra`` of the latter
    label = np.full(len(x), -1)
    count = np.zeros(k, dtype=int)
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), k)
        if label[i] >= 0 or count[j] > base or (count[j] == base and extra == 0):
            continue
        label[i] = j
        count[j] += 1
        extra -= int(count[j] == base + 1)
    return label


def fit_predict(data: Dataset, method: str, ar: Arith) -> np.ndarray:
    """Partitioned KRR: fit one model per group, predict each test point by its group's."""
    x, xt = ar.r(data.x), ar.r(data.x_test)
    centres = kmeans(x, PARTS)
    label = partition(x, centres, method)
    # test points go to the group whose members' mean is nearest (the balanced groups are
    # not the Voronoi cells of the k-means centroids)
    means = np.stack([x[label == j].mean(axis=0) if np.any(label == j) else centres[j]
                      for j in range(PARTS)])  # fmt: skip
    test_label = np.argmin(_distances(xt, means), axis=1)
    pred = np.zeros(len(xt), dtype=ar.dtype)
    for j in range(PARTS):
        members = label == j
        if not np.any(members) or not np.any(test_label == j):
            continue
        xj, yj = x[members], ar.r(data.y[members])
        system = ar.r(kernel_matrix(xj, xj, ar) + LAMBDA * len(xj) * np.eye(len(xj)))
        low = ar.cholesky(system)
        alpha = ar.solve_triangular(low.T, ar.solve_triangular(low, yj, lower=True), lower=False)
        pred[test_label == j] = ar.mm(kernel_matrix(xt[test_label == j], xj, ar), alpha)
    return pred


def exact_mse(data: Dataset) -> float:
    """Test MSE of exact KRR on all training points in float64."""
    ar = Arith(np.float64)
    k = kernel_matrix(data.x, data.x, ar) + LAMBDA * len(data.x) * np.eye(len(data.x))
    alpha = np.linalg.solve(k, data.y)
    pred = kernel_matrix(data.x_test, data.x, ar) @ alpha
    return float(np.mean((pred - data.y_test) ** 2))


def mse(data: Dataset, pred: np.ndarray) -> float:
    """Test mean squared error in float64 (NaN predictions give NaN)."""
    return float(np.mean((pred.astype(np.float64) - data.y_test) ** 2))


def _kernel(method: str) -> Kernel:
    def kernel(n: int, precision: Precision, region: Region) -> float:
        data = dataset(n)
        ar = Arith(np.dtype(real_dtype(precision)))
        with region:
            pred = fit_predict(data, method, ar)
        exact = exact_mse(data)
        return abs(mse(data, pred) - exact) / exact

    kernel.__doc__ = f"{method} partitioned KRR; test MSE relative to exact KRR."
    return kernel


def emulated(n: int, rnd: Round) -> float:
    """BKRR with every operation rounded; ``|MSE - MSE64| / MSE64`` against float64 BKRR."""
    data = dataset(n)
    got = mse(data, fit_predict(data, "balanced", Arith(rnd=rnd)))
    ref = mse(data, fit_predict(data, "balanced", Arith(np.float64)))
    return abs(got - ref) / ref


def flops(n: int) -> float:
    """FLOPs of :func:`fit_predict` with balanced groups of b = N/p points (exp counts as 1):
    k-means, p kernel matrices (2d+6 per entry), Cholesky, solves, test predictions."""
    b = n / PARTS
    kmeans_f = KMEANS_ITERATIONS * n * PARTS * 3.0 * DIM
    per_part = (2 * DIM + 6) * b * b + b**3 / 3.0 + 4.0 * b * b
    test = TEST_POINTS * b * (2 * DIM + 8)
    return kmeans_f + PARTS * per_part + test


def _info(method: str, name: str, label: str) -> AppInfo:
    return AppInfo(
        name=name,
        summary=f"kernel ridge regression, {PARTS} {label} partitions, synthetic data (NumPy)",
        kind=AppKind.NUMPY,
        size_doc="training points N",
        default_size=4096,
        small_size=512,
        flops=flops,
        bytes_moved=lambda n, itemsize: (n * n / PARTS + n * (DIM + 2.0)) * itemsize,
        tolerance=(0.5, 0.5),
        kernel=_kernel(method),
    )


APPS = (
    _info("balanced", "krr", "balanced (BKRR)"),
    _info("kmeans", "krr-kmeans", "k-means (KKRR)"),
)

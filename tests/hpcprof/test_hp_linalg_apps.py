"""Randomized and communication-avoiding linear algebra apps (glu, rqr, caqr, krr): exact
answers where they exist, the self-checks failing at bfloat16, FLOP models, the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from click.testing import CliRunner

from hpcprof.analysis.emulate import EMULATIONS
from hpcprof.apps import APPS, caqr, glu, krr, rqr
from hpcprof.apps.linalg import Arith, orthogonality
from hpcprof.cli.main import main
from hpcprof.results.records import Precision

NEW = ("glu", "glu-srht", "rqr", "caqr", "caqr-flat", "krr", "krr-kmeans")


def _bf16() -> Arith:
    from precision.quantize import quantize
    from precision.registry import parse
    from precision.rounding import RoundingMode

    fmt = parse("bfloat16")
    return Arith(rnd=lambda x: quantize(x, fmt, RoundingMode.NEAREST_EVEN))


def test_registered_listed_and_emulated() -> None:
    out = CliRunner().invoke(main, ["list"]).output
    for name in NEW:
        assert name in APPS and name in out
    assert {"glu", "rqr", "caqr", "krr"} <= set(EMULATIONS)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_emulated_qr_cholesky_solve_match_lapack(dtype: type) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20, 6))
    exact = Arith(rnd=lambda x: x)  # the emulated code paths, no rounding
    q, r = exact.qr(a)
    _, r2 = Arith(dtype).qr(a.astype(dtype))
    np.testing.assert_allclose(np.abs(r), np.abs(r2), rtol=1e-5, atol=1e-5)
    assert np.allclose(q @ r, a) and orthogonality(q) < 1e-13
    spd = a.T @ a + np.eye(6)
    low = exact.cholesky(spd)
    np.testing.assert_allclose(low, np.linalg.cholesky(spd), rtol=1e-12)
    b = rng.standard_normal(6)
    x = exact.solve_triangular(low, b, lower=True)
    np.testing.assert_allclose(x, scipy.linalg.solve_triangular(low, b, lower=True), rtol=1e-12)


def test_fwht_is_the_normalized_hadamard_matrix() -> None:
    x = np.random.default_rng(0).standard_normal((3, 16))
    expected = x @ scipy.linalg.hadamard(16) / 4.0
    np.testing.assert_allclose(glu.fwht(x, Arith()), expected, atol=1e-12)


@pytest.mark.parametrize("sketch", glu.SKETCHES)
def test_glu_is_exact_on_a_matrix_of_low_rank(sketch: str) -> None:
    n = 48
    _, r, _ = glu.ranks(n)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((n, r - 2)) @ rng.standard_normal((r - 2, n))
    approx = glu.generalized_lu(a, sketch, Arith())
    assert np.linalg.norm(a - approx) / np.linalg.norm(a) < 1e-10


@pytest.mark.parametrize("sketch", glu.SKETCHES)
def test_glu_near_the_svd_optimum_and_bfloat16_fails(sketch: str) -> None:
    a, s = glu.test_matrix(64)
    ratio = np.linalg.norm(a - glu.generalized_lu(a, sketch, Arith())) / glu.optimum(s)
    assert ratio <= APPS["glu"].tolerance_for(Precision.FLOAT64)
    # the truncated SVD is optimal: no rank-k approximation beats it
    k, _, _ = glu.ranks(64)
    u, sv, vt = np.linalg.svd(a)
    assert np.linalg.norm(a - (u[:, :k] * sv[:k]) @ vt[:k]) == pytest.approx(glu.optimum(s))
    bf = _bf16()
    low_ratio = np.linalg.norm(a - glu.generalized_lu(bf.r(a), sketch, bf)) / glu.optimum(s)
    assert low_ratio > APPS["glu"].tolerance_for(Precision.FLOAT32)


def test_rqr_factors_the_unformed_product() -> None:
    factors, sigma = rqr.test_product(24)
    u, rs = rqr.grurv(factors, rqr.POWERS, Arith())
    product = factors[0] @ np.linalg.solve(factors[1], factors[2])
    np.testing.assert_allclose(np.linalg.svd(product, compute_uv=False), sigma, rtol=1e-8)
    assert all(np.allclose(r, np.triu(r)) for r in rs)
    inner = rs[0] @ np.linalg.solve(rs[1], rs[2])  # R_1 R_2^{-1} R_3, upper triangular
    # P = U R V with V orthogonal: the same singular values, and U^T P = R V
    np.testing.assert_allclose(np.linalg.svd(inner, compute_uv=False), sigma, rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.diag(inner)), rqr.revealed_diagonal(rs, rqr.POWERS))
    diag = rqr.revealed_diagonal(rs, rqr.POWERS)
    assert diag[5] / diag[6] > 1e3  # the gap at rank n/4 = 6 shows on the diagonal
    assert rqr.check(factors, sigma, u) < 1.0


def test_rq_and_ql_factor() -> None:
    x = np.random.default_rng(2).standard_normal((7, 7))
    r, w = rqr.rq(x, Arith())
    assert np.allclose(r @ w, x) and np.allclose(r, np.triu(r)) and orthogonality(w) < 1e-13
    q, low = rqr.ql(x, Arith())
    assert np.allclose(q @ low, x) and np.allclose(low, np.tril(low))


def test_rqr_bfloat16_fails_its_check() -> None:
    factors, sigma = rqr.test_product(32)
    bf = _bf16()
    u, _ = rqr.grurv([bf.r(a) for a in factors], rqr.POWERS, bf)
    assert rqr.check(factors, sigma, u) > APPS["rqr"].tolerance_for(Precision.FLOAT32)


@pytest.mark.parametrize("arity", [2, 3, 8])
def test_tsqr_r_equals_lapack_up_to_signs(arity: int) -> None:
    a = caqr.test_matrix(256)
    q, r = caqr.tsqr(a, 8, arity, Arith())
    np.testing.assert_allclose(np.abs(r), np.abs(np.linalg.qr(a)[1]), rtol=1e-9, atol=1e-14)
    assert caqr.check(a, q, r) < 1e-13


def test_tsqr_traffic_by_hand() -> None:
    n, tri = 4, 10
    binary = caqr.traffic(8, n, 2)
    assert [t.messages_received for t in binary] == [3, 1, 2, 1, 3, 1, 2, 1]
    assert binary[0].words_received == 3 * tri and binary[0].messages_sent == 3
    assert binary[4].words_received == 2 * tri + 16  # leader at 2 levels, then its Q block
    assert binary[7].words_sent == tri and binary[7].messages_sent == 1
    flat = caqr.traffic(8, n, 8)
    assert flat[0].messages_received == 7 and flat[0].words_received == 7 * tri
    assert caqr.critical_path(8, n, 2) == (3 * tri + 3 * 16, 6)
    assert caqr.critical_path(8, n, 8) == (7 * tri + 7 * 16, 14)
    with pytest.raises(ValueError, match="arity"):
        caqr.levels(8, 1)
    with pytest.raises(ValueError, match="rows"):
        caqr.tsqr(np.ones((64, 16)), 8, 2, Arith())


def test_tsqr_bfloat16_fails_its_check() -> None:
    bf = _bf16()
    a = bf.r(caqr.test_matrix(128))
    q, r = caqr.tsqr(a, 8, 2, bf)
    assert caqr.check(a, q, r) > APPS["caqr"].tolerance_for(Precision.FLOAT32)


def test_krr_one_partition_is_exact_krr(monkeypatch: pytest.MonkeyPatch) -> None:
    data = krr.dataset(200)
    monkeypatch.setattr(krr, "PARTS", 1)
    pred = krr.fit_predict(data, "balanced", Arith())
    assert krr.mse(data, pred) == pytest.approx(krr.exact_mse(data), rel=1e-9)


def test_krr_partitionings() -> None:
    data = krr.dataset(402)
    centres = krr.kmeans(data.x, 4)
    sizes = np.bincount(krr.partition(data.x, centres, "balanced"), minlength=4)
    assert sizes.max() - sizes.min() <= 1  # 402 = 101 + 101 + 100 + 100
    labels = krr.partition(data.x, centres, "kmeans")
    dist = ((data.x[:, None, :] - centres[None]) ** 2).sum(-1)
    assert np.array_equal(labels, dist.argmin(1))
    with pytest.raises(ValueError, match="balanced"):
        krr.partition(data.x, centres, "random")


@pytest.mark.parametrize("method", krr.METHODS)
def test_krr_bfloat16_fails_and_float64_passes(method: str) -> None:
    data = krr.dataset(256)
    exact = krr.exact_mse(data)
    ok = abs(krr.mse(data, krr.fit_predict(data, method, Arith())) - exact) / exact
    assert ok <= APPS["krr"].tolerance_for(Precision.FLOAT64)
    with np.errstate(all="ignore"):
        bad = krr.mse(data, krr.fit_predict(data, method, _bf16()))
    assert not abs(bad - exact) / exact <= APPS["krr"].tolerance_for(Precision.FLOAT32)


def test_flop_models() -> None:
    assert APPS["rqr"].flops(100) == pytest.approx(14 * 100.0**3)
    for name in ("caqr", "caqr-flat"):  # leaves linear in m, tree independent of m
        f = APPS[name].flops
        assert f(4096) - f(2048) == pytest.approx(2 * (f(2048) - f(1024)))

    # by hand: 7 tree nodes of 32 x 16 (binary) against one 128 x 16 node (flat), each
    # QR with Q formed, 2 (2 m n^2 - 2 n^3 / 3), plus the Q product of its rows, 2 m n^2
    def node(m: int) -> float:
        return 2 * (2 * m * 16**2 - 2 * 16**3 / 3) + 2 * m * 16**2

    diff = APPS["caqr"].flops(4096) - APPS["caqr-flat"].flops(4096)
    assert diff == pytest.approx(7 * node(32) - node(128))
    assert APPS["krr"].flops(1 << 16) / APPS["krr"].flops(1 << 15) == pytest.approx(8, rel=0.02)
    n = 1024
    _, r, w = glu.ranks(n)
    # A V, U^T A, A_hat (2 n^2 each per column), the core, its QR, Q^T U^T A, the solve
    qr = 2 * (2 * w * r * r - 2 * r**3 / 3)
    hand = 2.0 * n * n * (2 * r + w) + 2 * n * w * r + qr + 2 * w * r * n + r * r * n
    assert APPS["glu"].flops(n) == pytest.approx(hand)
    assert APPS["glu-srht"].flops(n) < APPS["glu"].flops(n)  # O(n^2 log n) sketching


def test_run_timer_backend_on_the_new_apps(tmp_path: Path) -> None:
    args = ["run", "--sizes", "small", "--backend", "timer", "-r", "1", "--warmup", "0",
            "--precision", "float32", "--out", str(tmp_path), "-q"]  # fmt: skip
    for name in NEW:
        args += ["--app", name]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = CliRunner().invoke(
        main, ["report", "--no-png", result.stdout.strip().splitlines()[-1]]
    )
    for name in NEW:
        assert f"| {name} | float32 |" in report.output


@pytest.mark.slow
@pytest.mark.valgrind
@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("objdump") is None,
    reason="needs valgrind and objdump (binutils) on PATH",
)
def test_float32_factorizations_compute_in_float32(tmp_path: Path) -> None:
    """numpy.linalg computes a float32 QR or Cholesky in float64 and casts back; callgrind
    counted 62% FP64 in float32 TSQR through it. The native float32 path stays float32."""
    args = ["run", "--app", "caqr", "--precision", "float32", "--sizes", "small",
            "--backend", "callgrind", "-r", "1", "--warmup", "0", "--out", str(tmp_path), "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = (
        CliRunner()
        .invoke(main, ["report", "--no-png", result.stdout.strip().splitlines()[-1]])
        .output
    )
    (row,) = [line for line in report.splitlines() if line.startswith("| caqr | float32 |")]
    fp64, fp32 = (float(c) for c in row.split("|")[5:7])
    assert fp32 > 0 and fp64 / (fp64 + fp32) < 0.05, row

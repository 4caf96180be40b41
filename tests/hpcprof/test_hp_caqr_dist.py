"""Distributed TSQR over real gloo processes on loopback: the factorization matches the
in-process one, and every rank's counted words and messages equal the traffic model."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hpcprof.apps import caqr

WORLD = 4
ROWS = 24  # per rank
ARITIES = (2, 4, 3)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, out_dir: str) -> None:
    from hpcprof.apps.caqr_dist import tsqr_ranks

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))  # fmt: skip
    try:
        a = torch.from_numpy(caqr.test_matrix(WORLD * ROWS))
        results = {}
        for arity in ARITIES:
            q, r, counter = tsqr_ranks(a[rank * ROWS : (rank + 1) * ROWS], arity)
            results[arity] = {"q": q, "r": r, "traffic": counter.record(rank)}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_distributed_tsqr_factors_and_counts_traffic(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    a = caqr.test_matrix(WORLD * ROWS)
    for arity in ARITIES:
        q = torch.cat([p[arity]["q"] for p in parts]).numpy()
        r = parts[0][arity]["r"].numpy()
        assert caqr.check(a, q, r) < 1e-13
        np.testing.assert_allclose(np.abs(r), np.abs(np.linalg.qr(a)[1]), rtol=1e-9, atol=1e-14)
        counted = tuple(p[arity]["traffic"] for p in parts)
        assert counted == caqr.traffic(WORLD, caqr.COLUMNS, arity)

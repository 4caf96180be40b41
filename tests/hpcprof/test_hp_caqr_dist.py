"""Distributed TSQR over real gloo processes on loopback: the factorization matches the
in-process one, and every rank's counted words and messages equal the traffic model; and
``hpcprof run caqr`` under the torch.distributed (and mpirun) launcher runs the tree across
2 and 4 real local ranks, recording one row per rank."""

from __future__ import annotations

import shutil
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from click.testing import CliRunner

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


def _run_across_ranks(tmp_path: Path, launcher: str, ranks: int, app: str) -> pd.DataFrame:
    from hpcprof.cli.main import main
    from hpcprof.results.store import read_run

    out = tmp_path / f"{launcher}-{ranks}-{app}"
    result = CliRunner().invoke(
        main, ["run", "--app", app, "--precision", "float64", "--launcher", launcher,
               "--ranks", str(ranks), "--backend", "timer", "--size", f"{app}={ranks * 64}",
               "-r", "1", "--warmup", "0", "--out", str(out), "-q"],
        env={"MASTER_PORT": str(_free_port())},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    return read_run(run_dir)[0]


@pytest.mark.distributed
@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("app", ["caqr", "caqr-flat"])
def test_hpcprof_run_caqr_across_torch_distributed_ranks(
    tmp_path: Path, ranks: int, app: str
) -> None:
    frame = _run_across_ranks(tmp_path, "torch.distributed", ranks, app)
    assert set(frame["status"]) == {"ok"}
    check_error = frame.loc[frame["metric"] == "check_error", "value"].item()
    assert check_error < 1e-13  # ||A - QR|| / ||A|| and ||Q^T Q - I|| of the assembled result
    arity = 2 if app == "caqr" else caqr.BLOCKS
    model = caqr.traffic(ranks, caqr.COLUMNS, arity)
    for metric in ("words_sent", "words_received", "messages_sent", "messages_received"):
        rows = frame[frame["metric"] == metric]
        per_rank = {
            p: v for p, v in zip(rows["process"], rows["value"], strict=True) if pd.notna(p)
        }
        # every rank's row is what it really moved, and equals the tree's traffic model
        assert per_rank == {f"rank {t.rank}": getattr(t, metric) for t in model}
        assert rows.loc[rows["process"].isna(), "value"].item() == sum(per_rank.values())


@pytest.mark.distributed
def test_hpcprof_run_caqr_across_mpirun_ranks(tmp_path: Path) -> None:
    if shutil.which("mpirun") is None:
        pytest.skip("no mpirun on PATH: the MPI launcher path cannot run here")
    frame = _run_across_ranks(tmp_path, "mpirun", 2, "caqr")
    rows = frame[(frame["metric"] == "words_sent") & frame["process"].notna()]
    assert len(rows) == 2 and frame.loc[frame["metric"] == "check_error", "value"].item() < 1e-13

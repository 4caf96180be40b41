"""Shared fixture: an isolated build cache for the C apps."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compile C apps into a per-session cache, never into the user's ~/.cache."""
    old = os.environ.get("HPCPROF_CACHE_DIR")
    os.environ["HPCPROF_CACHE_DIR"] = str(tmp_path_factory.mktemp("hpcprof-cache"))
    yield
    if old is None:
        os.environ.pop("HPCPROF_CACHE_DIR", None)
    else:
        os.environ["HPCPROF_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A single-node Slurm on localhost (munged, slurmctld, slurmd as root), torn down at the
    end of the session; yields the environment (SLURM_CONF) clients need. Skips with the
    reason where Slurm cannot start (binaries missing, not root, daemons fail)."""
    from slurm_local import running_slurm

    with running_slurm(tmp_path_factory.mktemp("slurm")) as env:
        yield env

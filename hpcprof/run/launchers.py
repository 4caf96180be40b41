"""How a measured command is started: directly, under ``mpirun``, ``srun`` or
torch.distributed's elastic launcher (``torchrun``: local ranks with RANK/WORLD_SIZE and a
rendezvous on this host, which a distributed app such as ``caqr`` joins over gloo).

A launcher only builds an argument list (never a shell string). It wraps the command the
backend produced, so with several ranks every rank runs under the counter tool; counting
backends then read one output per rank only where the tool writes one file per process.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from hpcprof.errors import LaunchError


class LauncherKind(Enum):
    """Closed set of launchers."""

    LOCAL = "local"
    MPIRUN = "mpirun"
    SRUN = "srun"
    TORCH_DISTRIBUTED = "torch.distributed"


@dataclass(frozen=True, kw_only=True)
class Launcher:
    """A launcher and its rank count.

    Args:
        kind: local, mpirun, srun or torch.distributed.
        ranks: processes to start (local: exactly 1).
        extra_args: further launcher arguments, placed before the command.
    """

    kind: LauncherKind = LauncherKind.LOCAL
    ranks: int = 1
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ranks < 1:
            raise ValueError(f"ranks={self.ranks}: must be >= 1")
        if self.kind is LauncherKind.LOCAL and (self.ranks != 1 or self.extra_args):
            raise ValueError("launcher local: runs one process; use mpirun or srun for ranks > 1")

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """The argument list that starts ``cmd`` under this launcher."""
        if self.kind is LauncherKind.MPIRUN:
            return ["mpirun", "-np", str(self.ranks), *self.extra_args, *cmd]
        if self.kind is LauncherKind.SRUN:
            return ["srun", f"--ntasks={self.ranks}", *self.extra_args, *cmd]
        if self.kind is LauncherKind.TORCH_DISTRIBUTED:
            # --no-python: every rank runs the (backend-wrapped) command as it is
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={self.ranks}", "--no-python", *self.extra_args, *cmd]  # fmt: skip
        return list(cmd)

    def check(self) -> None:
        """Raise if the launcher's program is not on PATH.

        Raises:
            LaunchError: ``mpirun`` or ``srun`` missing, or torch not importable.
        """
        if self.kind is LauncherKind.TORCH_DISTRIBUTED:
            if importlib.util.find_spec("torch") is None:
                raise LaunchError("launcher torch.distributed: torch is not installed")
            return
        if self.kind is not LauncherKind.LOCAL and shutil.which(self.kind.value) is None:
            raise LaunchError(f"launcher {self.kind.value}: {self.kind.value} not found on PATH")

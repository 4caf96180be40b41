"""A throwaway single-node Slurm on localhost for tests (munged, slurmctld, slurmd as root).

Everything lives in one temporary directory: the munge key and socket, slurm.conf, state,
spool and logs. Ports are picked free. ``start`` raises :class:`SlurmUnavailable` with the
reason when Slurm cannot run here; the caller turns that into a skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return max(512, int(line.split()[1]) // 1024 // 2)
    except OSError:
        pass
    return 1024


class LocalSlurm:
    """Start and stop the daemons; ``env`` holds SLURM_CONF for client commands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conf = root / "slurm.conf"
        self.env: dict[str, str] = {}

    def _which(self, name: str) -> str:
        path = shutil.which(name) or (
            f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
        )
        if path is None:
            raise SlurmUnavailable(f"{name} not installed (apt-get install slurm-wlm munge)")
        return path

    def _spawn(self, *cmd: str) -> None:
        log = (self.root / f"{Path(cmd[0]).name}.out").open("wb")
        self.procs.append(
            subprocess.Popen(
                list(cmd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def start(self, timeout_s: float = 30.0) -> None:
        """Start munged, slurmctld and slurmd; wait until ``sinfo`` shows the node idle.

        Raises:
            SlurmUnavailable: not root, a binary is missing, or the node never became idle.
        """
        if os.geteuid() != 0:
            raise SlurmUnavailable("not root: slurmd and munged need root here")
        paths = {name: self._which(name) for name in DAEMONS}
        munge = self.root / "munge"
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        sock = munge / "munge.socket"
        self._spawn(
            paths["munged"], "--foreground", "--force", f"--socket={sock}",
            f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}",
        )  # fmt: skip
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        host = socket.gethostname().split(".")[0]
        cpus = len(os.sched_getaffinity(0))
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=hpcproftest",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={sock}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "SlurmdTimeout=30",
                    "InactiveLimit=0",
                    "KillWait=2",
                    f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} "
                    f"RealMemory={_memory_mb()} State=UNKNOWN",
                    "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self.env = {"SLURM_CONF": str(self.conf)}
        deadline = time.monotonic() + timeout_s
        while not sock.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise SlurmUnavailable(f"munged did not start: {self._tail('munged.out')}")
            time.sleep(0.1)
        self._spawn(paths["slurmctld"], "-D", "-c", "-i", "-f", str(self.conf))
        self._spawn(paths["slurmd"], "-D", "-N", "localhost", "-f", str(self.conf))
        env = {**os.environ, **self.env}
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise SlurmUnavailable(
                        f"{proc.args[0]} exited ({proc.returncode}): "  # type: ignore[index]
                        f"{self._tail('slurmctld.log')} {self._tail('slurmd.log')}"
                    )
            out = subprocess.run(
                [paths["sinfo"], "-h", "-N", "-o", "%N %t"],
                capture_output=True, text=True, env=env, check=False, timeout=10,
            )  # fmt: skip
            if "localhost idle" in out.stdout:
                return
            time.sleep(0.5)
        raise SlurmUnavailable(
            f"node not idle after {timeout_s:.0f}s: {self._tail('slurmctld.log')} "
            f"{self._tail('slurmd.log')}"
        )

    def _tail(self, name: str) -> str:
        path = self.root / name
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"({name} missing)"
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        """Stop the daemons started by ``start`` (slurmd, slurmctld, then munged)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()


@contextlib.contextmanager
def running_slurm(directory: Path) -> Iterator[dict[str, str]]:
    """A :class:`LocalSlurm` in ``directory`` with its environment (SLURM_CONF) set while
    the block runs, torn down after; skips the test with the reason where Slurm cannot
    start (binaries missing, not root, daemons fail)."""
    import pytest

    slurm = LocalSlurm(directory)
    try:
        slurm.start(timeout_s=40.0)
    except SlurmUnavailable as exc:
        slurm.stop()
        pytest.skip(f"local Slurm unavailable: {exc}")
    saved = {k: os.environ.get(k) for k in slurm.env}
    os.environ.update(slurm.env)
    try:
        yield slurm.env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        slurm.stop()

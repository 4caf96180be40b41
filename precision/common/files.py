"""Atomic file writes: readers see the old file or the new one, never half of either."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Replace ``path`` with what ``write`` puts in a temporary file next to it.

    The temporary file lives in the same directory (so ``os.replace`` is atomic), gets the
    usual ``0666 & ~umask`` mode (``mkstemp`` creates 0600) and is removed if ``write`` fails.

    Args:
        path: the file to create or replace; missing parent directories are created.
        write: called with the temporary path; writes the whole content there.

    Raises:
        OSError: the directory or file cannot be written; whatever ``write`` raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8).

    Raises:
        OSError: the file cannot be written.
    """
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_save_figure(
    fig: Any, path: str | os.PathLike[str], *, dpi: int = 120, tight: bool = True
) -> None:
    """Render a matplotlib ``Figure`` to PNG and replace ``path`` with it atomically.

    A bare ``Figure`` gets the Agg canvas; a pyplot figure keeps its own (the caller closes
    it). ``tight`` crops to the drawn content (``bbox_inches="tight"``).

    Raises:
        OSError: the file cannot be written.
    """
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if type(fig.canvas) is FigureCanvasBase:
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))

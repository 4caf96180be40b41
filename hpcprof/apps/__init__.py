"""Built-in proxy apps and training kernels, and external apps from suite files.

``APPS`` maps names to frozen :class:`~hpcprof.apps.base.AppInfo` records; building it only
creates data (no compiling, no probing).
"""

from __future__ import annotations

from hpcprof.apps import (
    caqr,
    cg,
    cuda,
    dl_kernels,
    fft,
    gemm,
    glu,
    krr,
    lookup,
    md,
    rqr,
    stencil,
    stream,
)
from hpcprof.apps.base import AppInfo, AppKind, Device
from hpcprof.errors import UnknownNameError
from precision.common.registry import Registry

APPS: Registry[AppInfo] = Registry(
    "app",
    [
        *stream.APPS,
        *gemm.APPS,
        *cg.APPS,
        *stencil.APPS,
        *md.APPS,
        *lookup.APPS,
        *fft.APPS,
        *dl_kernels.APPS,
        *glu.APPS,
        *rqr.APPS,
        *caqr.APPS,
        *krr.APPS,
        *cuda.APPS,
    ],
    error=UnknownNameError,
)

__all__ = ["APPS", "AppInfo", "AppKind", "Device", "Registry"]

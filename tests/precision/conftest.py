from __future__ import annotations

import pytest

from precision import kernel_backend


@pytest.fixture(params=["eager", "compiled"])
def backend(request: pytest.FixtureRequest):
    """Run a test on both kernel backends: they must give the same bits."""
    with kernel_backend(request.param):
        yield request.param

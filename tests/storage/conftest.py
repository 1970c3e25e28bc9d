from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # The app runs on asyncio (uvicorn); the stores' worker threads hang off its loop.
    return "asyncio"

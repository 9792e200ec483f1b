"""A client of the session's real CPU model server (the `model_server` fixture is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.model_client import ModelClient
from services.model_server.process import ModelServerProcess


@pytest.fixture
async def model_client(model_server: ModelServerProcess) -> AsyncIterator[ModelClient]:
    async with ModelClient(model_server.grpc_url, deadline_s=120, retries=2) as client:
        yield client

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer
from tests.support.stack import Running, running_app


@pytest.fixture
async def api(environ: dict[str, str]) -> AsyncIterator[Running]:
    async with running_app(environ) as running:
        yield running


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, which it may take down and bring back."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop(keep_data=False)

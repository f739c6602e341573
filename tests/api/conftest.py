from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.stack import Running, running_app


@pytest.fixture
async def api(environ: dict[str, str]) -> AsyncIterator[Running]:
    async with running_app(environ) as running:
        yield running

"""One reliability context per module: the scenarios' short versions share its service and its witness."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from reliability.context import Context, open_context


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def context(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Context]:
    async with open_context(pg_server, tmp_path_factory.mktemp("reliability")) as opened:
        yield opened

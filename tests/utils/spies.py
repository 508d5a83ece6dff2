"""Spies: wrappers that count the calls of a real function and then call it. Not mocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class CallCount:
    calls: int = 0


def count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> CallCount:
    """Replace the coroutine function module.name by one that counts its calls and awaits the real one."""
    real = getattr(module, name)
    count = CallCount()

    async def spy(*args: Any, **kwargs: Any) -> Any:
        count.calls += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return count

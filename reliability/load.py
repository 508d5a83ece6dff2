"""Load at a bounded rate, and the tally of what every request got (status or error, and how long it took).

Open loop: request i leaves at start + i / rate whether or not earlier ones have been answered, as
independent clients send, so a slow service meets the same demand instead of a politely waiting one.
Bounded in count (rate x duration) and in requests outstanding at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

# Requests with no answer after this long count as failed (a hung request is a failure too).
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Outcome:
    kind: str  # what was asked: create, read, login...
    started: float  # monotonic
    seconds: float
    status: int | None  # None: no HTTP answer
    error: str | None = None  # the transport error's class, or the error code of a 5xx body

    @property
    def finished(self) -> float:
        return self.started + self.seconds

    @property
    def result(self) -> str:
        return str(self.status) if self.error is None else f"{self.status or ''} {self.error}".strip()


@dataclass
class Tally:
    """Every outcome of a scenario's requests, and which statuses each kind of request expects."""

    expected: dict[str, frozenset[int]]
    outcomes: list[Outcome] = field(default_factory=list)

    async def timed(self, kind: str, request: Awaitable[httpx.Response]) -> httpx.Response | None:
        """Send, time and record one request; the response, or None when there was none."""
        started = time.monotonic()
        try:
            response = await request
        except httpx.HTTPError as exc:
            self.outcomes.append(Outcome(kind, started, time.monotonic() - started, None, type(exc).__name__))
            return None
        seconds = time.monotonic() - started
        self.outcomes.append(Outcome(kind, started, seconds, response.status_code, error_code(response)))
        return response

    def failed(self, outcome: Outcome) -> bool:
        return outcome.status not in self.expected.get(outcome.kind, frozenset())

    def between(self, start: float = float("-inf"), end: float = float("inf")) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if start <= outcome.started < end]

    def summary(self, outcomes: Iterable[Outcome] | None = None) -> dict[str, Any]:
        """sent, failed, what each kind got, and latency percentiles (ms), of these outcomes (default: all)."""
        chosen = list(self.outcomes if outcomes is None else outcomes)
        results = Counter(f"{outcome.kind} {outcome.result}" for outcome in chosen)
        return {
            "sent": len(chosen),
            "failed": sum(1 for outcome in chosen if self.failed(outcome)),
            "results": dict(sorted(results.items())),
            **latency_ms([outcome.seconds for outcome in chosen]),
        }


def error_code(response: httpx.Response) -> str | None:
    """The error code of a 5xx in the service's error shape (which fault it was), else None.

    A 503 without Retry-After, or a 5xx not in the error shape, says so instead.
    """
    return answer_error(response.status_code, "retry-after" in response.headers, response.content)


UNSHAPED_SHOWN = 40


def answer_error(status: int | None, retry_after: bool, body: bytes) -> str | None:
    """error_code of an answer read by hand (reliability.raw): its status, whether it had Retry-After, its body."""
    if status is None or status < 500:
        return None
    if status == 503 and not retry_after:
        return "no-retry-after"
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        # The body's start, so that the results say whose answer it was (uvicorn's own 500 is plain text).
        return f"unshaped {body[:UNSHAPED_SHOWN]!r}"


def latency_ms(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2), "max_ms": round(max(seconds) * 1000, 2)}


async def paced(
    rate: float,
    duration: float,
    send: Callable[[int], Awaitable[object]],
    stop: asyncio.Event | None = None,
    max_outstanding: int = 256,
) -> dict[str, int]:
    """Call send(i) `rate` times a second for `duration` seconds at most (less if `stop` is set); then wait
    for the last to finish.

    A request due while `max_outstanding` are still unanswered is not sent (counted as skipped): the
    bound keeps a stalled service from piling up unbounded client tasks.
    """
    total, started, scheduled = int(rate * duration), time.monotonic(), 0
    outstanding: set[asyncio.Task[object]] = set()
    crashed: list[BaseException] = []
    skipped = 0

    def finished(task: asyncio.Task[object]) -> None:
        outstanding.discard(task)
        if not task.cancelled() and task.exception() is not None:
            crashed.append(task.exception())  # type: ignore[arg-type]

    for index in range(total):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop is not None and stop.is_set():
            break
        scheduled += 1
        if len(outstanding) >= max_outstanding:
            skipped += 1
            continue
        task = asyncio.ensure_future(send(index))
        outstanding.add(task)
        task.add_done_callback(finished)
    if outstanding:
        await asyncio.wait(outstanding, timeout=REQUEST_TIMEOUT_SECONDS + 5)
    if crashed:
        raise crashed[0]  # a fault of the scenario's own code, not an answer of the service
    return {"scheduled": scheduled, "skipped": skipped}

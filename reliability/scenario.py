"""What a scenario is (a promise, how it is tried at each length) and what it hands back (its findings)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reliability.config import QUICK

if TYPE_CHECKING:
    from reliability.context import Context

P = TypeVar("P")


@dataclass
class Findings:
    """What a scenario observed. Every broken promise is a problem, in words; none means it held."""

    sent: int = 0
    failed: int = 0
    lost_writes: int = 0
    observed: str = ""
    # The figures the issue names where they apply (recovery_s, connections_before, connections_after,
    # accepted_attacks, p99_ms), and any others the scenario measured.
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, problem: str) -> None:
        """Record `problem` unless the condition holds."""
        if not condition:
            self.problems.append(problem)


@dataclass(frozen=True)
class Scenario(Generic[P]):
    """One promise: its key in the report, what is tried, and its parameters at each length."""

    key: str
    tried: str
    run: Callable[[Context, P], Awaitable[Findings]]
    quick: P
    long: P

    def params(self, profile: str) -> P:
        return self.quick if profile == QUICK else self.long

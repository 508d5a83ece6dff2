"""A run: the chosen scenarios one after another in one context, each turned into its report entry."""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

from reliability.config import ISSUE_KEYS
from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.scenarios import SCENARIOS

PASSED, FAILED, ERROR, NOT_RUN = "passed", "failed", "error", "not run"


def verdict(findings: Findings) -> list[str]:
    """Every broken promise: the scenario's own, and those its counts show."""
    problems = list(findings.problems)
    if findings.failed:
        problems.append(f"{findings.failed} of {findings.sent} failed")
    if findings.lost_writes:
        problems.append(f"{findings.lost_writes} acknowledged writes missing afterwards")
    if findings.figures.get("accepted_attacks"):
        problems.append(f"{findings.figures['accepted_attacks']} attacks accepted")
    return problems


def entry(scenario: Scenario[Any], findings: Findings, seconds: float) -> dict[str, Any]:
    problems = verdict(findings)
    return {
        "status": FAILED if problems else PASSED,
        "tried": scenario.tried,
        "observed": findings.observed,
        "sent": findings.sent,
        "failed": findings.failed,
        "lost_writes": findings.lost_writes,
        **findings.figures,
        "problems": problems,
        "duration_s": round(seconds, 1),
    }


def not_run(key: str, why: str) -> dict[str, Any]:
    tried = SCENARIOS[key].tried if key in SCENARIOS else ""
    return {"status": NOT_RUN, "tried": tried, "observed": why, "sent": None, "failed": None, "lost_writes": None}


def crashed(scenario: Scenario[Any], error: BaseException, seconds: float) -> dict[str, Any]:
    """The scenario itself broke: reported as an error, which is not a pass."""
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return not_run(scenario.key, f"the scenario broke: {text}") | {"status": ERROR, "duration_s": round(seconds, 1)}


async def run_one(context: Context, scenario: Scenario[Any], profile: str) -> dict[str, Any]:
    context.scenario = scenario.key
    started = time.monotonic()
    progress(f"{scenario.key}: started ({profile})")
    try:
        findings = await scenario.run(context, scenario.params(profile))
    except Exception as exc:
        traceback.print_exc()
        found = crashed(scenario, exc, time.monotonic() - started)
    else:
        found = entry(scenario, findings, time.monotonic() - started)
    progress(f"{scenario.key}: {found['status']} in {time.monotonic() - started:.0f} s: {found['observed']}")
    return found


async def run_all(context: Context, chosen: tuple[str, ...], profile: str) -> dict[str, dict[str, Any]]:
    """An entry for every key of the issue and every scenario chosen, in the registry's order."""
    entries = {}
    for key, scenario in SCENARIOS.items():
        if key in chosen:
            entries[key] = await run_one(context, scenario, profile)
    reported = {}
    for key in (*ISSUE_KEYS, *SCENARIOS):
        if key in entries:
            reported[key] = entries[key]
        elif key not in reported:
            why = "not chosen for this run" if key in SCENARIOS else "no scenario is registered under this key yet"
            reported[key] = not_run(key, why)
    return reported


def progress(text: str) -> None:
    print(f"reliability: {text}", file=sys.stderr, flush=True)

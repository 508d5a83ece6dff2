"""Schemathesis against the running service's own /openapi.json: every check (`--checks all`), every phase
(examples, coverage, fuzzing, and stateful, along the links it infers from the schema), with the tokens
the routes need (schemathesis_hooks.py). Zero failures: each one it finds is a real mismatch between
the schema and the behaviour, or a 5xx, reported with its reproduction."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from reliability import postgres
from reliability.config import REPO_ROOT
from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.service import shared
from reliability.workload import log_in

HOOKS = "reliability.scenarios.schemathesis_hooks"
JUNIT = "junit.xml"
PHASES = "examples,coverage,fuzzing,stateful"
# Beyond its own time budget (--max-time), the CLI gets this long to finish and write its reports.
GRACE_SECONDS = 120


@dataclass(frozen=True)
class Params:
    max_examples: int
    max_time_s: int
    seed: int = 13


def command(url: str, params: Params, reports: Path) -> list[str]:
    binary = str(Path(sys.executable).with_name("schemathesis"))
    return [
        binary,
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(params.max_examples),
        "--max-time",
        str(params.max_time_s),
        "--seed",
        str(params.seed),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--report",
        "junit,ndjson",
        "--report-junit-path",
        str(reports / JUNIT),
        "--report-ndjson-path",
        str(reports / "events.ndjson"),
        "--no-color",
        "--output-truncate",
        "false",
    ]


async def run(context: Context, params: Params) -> Findings:
    reports = context.scratch("schemathesis")
    service, database = await shared(context)
    async with context.witness.client(service.url) as client:
        users_before = await postgres.user_count(database)
        email, password = f"fuzz-{uuid.uuid4().hex[:12]}@example.com", f"fuzz-{uuid.uuid4().hex}"
        context.witness.secret("password", password)
        signup = await client.post("/v1/users", json={"email": email, "name": "Fuzz", "password": password})
        signup.raise_for_status()
        token = await log_in(context, client, email, password)
        env = os.environ | {
            "SCHEMATHESIS_HOOKS": HOOKS,
            "PYTHONPATH": str(REPO_ROOT),
            "RELIABILITY_SCHEMATHESIS_URL": service.url,
            "RELIABILITY_USER_TOKEN": token,
            "RELIABILITY_BATCH_TOKEN": context.batch_token,
        }
        completed = await asyncio.to_thread(
            subprocess.run,
            command(service.url, params, reports),
            env=env,
            cwd=reports,
            capture_output=True,
            text=True,
            timeout=params.max_time_s + GRACE_SECONDS,
            check=False,
        )
        users = await postgres.user_count(database) - users_before
    (reports / "output.txt").write_text(completed.stdout + completed.stderr)
    return findings(completed, reports, users)


def junit_failures(reports: Path) -> list[dict[str, str]]:
    """Each failed operation of the JUnit report: its name and the first lines of what failed."""
    path = reports / JUNIT
    if not path.is_file():
        return []
    failed = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):  # noqa: S314 - the CLI's own report
        for problem in (*case.findall("failure"), *case.findall("error")):
            text = (problem.text or problem.get("message") or "").strip()
            failed.append({"operation": case.get("name", "?"), "kind": problem.tag, "what": first_lines(text)})
    return failed


def headline(what: str) -> str:
    """The check that failed and the answer that failed it, e.g. `ST202 Schema-valid request rejected: [422] ...`."""
    lines = [line.strip() for line in what.splitlines() if line.strip()]
    check = next((line.lstrip("- ") for line in lines if line.startswith("- ")), "")
    answer = next((line for line in lines if line.startswith("[")), "")
    body = next((line.strip("`") for line in lines if line.startswith("`")), "")
    return f"{check}: {answer} {body[:300]}".strip()


def first_lines(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[:lines])


def counted(output: str, pattern: str) -> int | None:
    """A count from the CLI's summary, e.g. `Test cases:` ... `N generated, M found K unique failures`."""
    match = re.search(pattern, output)
    return int(match.group(1).replace(",", "")) if match else None


def findings(completed: subprocess.CompletedProcess[str], reports: Path, users: int) -> Findings:
    output = completed.stdout + completed.stderr
    failures = junit_failures(reports)
    cases = counted(output, r"Test cases:\s*(\d[\d,]*)\s+generated")
    unique = counted(output, r"(\d[\d,]*)\s+unique failures") or 0
    # The JUnit report lists each failing operation once; the summary counts each distinct failure.
    found = Findings(sent=cases or 0, failed=max(unique, len(failures)))
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    found.figures = {
        "test_cases": cases,
        "exit_code": completed.returncode,
        "unique_failures": unique,
        "users_created": users,  # by schemathesis, the scenario's own included
        "failures": failures,
        "summary": first_lines(summary, 40),
    }
    found.expect(cases is not None, f"no test-case count in the output (exit {completed.returncode})")
    found.expect(completed.returncode in (0, 1), f"schemathesis itself failed (exit {completed.returncode})")
    found.expect(completed.returncode == 0 or found.failed > 0, "schemathesis exited 1 with no failure counted")
    for failure in failures:
        found.problems.append(f"{failure['operation']}: {headline(failure['what'])}")
    operations = sorted({failure["operation"] for failure in failures})
    found.observed = f"{cases} test cases, {len(failures)} failures" + (
        f": {', '.join(operations)}" if operations else ""
    )
    return found


SCENARIO = Scenario(
    key="schemathesis",
    tried=(
        "schemathesis --checks all, phases examples, coverage, fuzzing and stateful (inferred links), with the "
        "batch token, the user's own token for users it signed up, else the scenario user's token"
    ),
    run=run,
    quick=Params(max_examples=3, max_time_s=10),
    long=Params(max_examples=50, max_time_s=120),
)

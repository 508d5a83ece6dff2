"""`python -m reliability`: run the scenarios (the long versions unless --quick) and write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import uvloop

from bench import machine
from reliability import report
from reliability.config import LONG, QUICK, RESULTS_DIR
from reliability.context import open_context
from reliability.postgres import fetch_value
from reliability.runner import ERROR, FAILED, NOT_RUN, PASSED, progress, run_all
from reliability.scenarios import SCENARIOS
from tests.utils.postgres import TEST_DATABASE_ENV, server_url

# Beyond the bench's stack: what the scenarios lean on.
EXTRA_PACKAGES = ("redis", "schemathesis", "hypothesis", "scipy")


def names(text: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    p.add_argument("--scenarios", type=names, default=tuple(SCENARIOS), help=f"of {','.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help="the test suite's short versions instead of the long ones")
    p.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="where results go (reliability/results)")
    p.add_argument("--keep-work-dir", action="store_true", help="keep tmp/ (a failed run keeps it)")
    return p


def describe(profile: str, database: str, postgres_version: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    found = machine.machine(allowed[0], allowed[-1], allowed)
    for unpinned in ("server_cpu", "client_cpu"):  # nothing is pinned here
        del found[unpinned]
    versions = {name: version for name, version in machine.versions("", postgres_version).items() if name != "wrk"}
    versions |= {name: package_version(name) for name in EXTRA_PACKAGES}
    return {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "date_stamp": now.strftime("%Y-%m-%d-%H%M"),
        "profile": profile,
        "machine": found,
        "versions": versions,
        "database": database,
    }


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    profile = QUICK if args.quick else LONG
    server, embedded = server_url()
    where = f"the server named by {TEST_DATABASE_ENV}" if embedded is None else "an embedded PostgreSQL (pgserver)"
    work_dir = args.output_dir / "tmp"
    shutil.rmtree(work_dir, ignore_errors=True)
    started = time.monotonic()
    results = describe(profile, where, str(await fetch_value(server, "SHOW server_version")))
    async with open_context(server, work_dir) as context:
        results["scenarios"] = await run_all(context, args.scenarios, profile)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    statuses = [entry["status"] for entry in results["scenarios"].values()]
    results["summary"] = {status: statuses.count(status) for status in (PASSED, FAILED, ERROR, NOT_RUN)}
    # A failed run keeps its logs: one 500 in 2,000 requests (a database restart) was seen once, in a
    # run that deleted the service's log with its traceback.
    if results["summary"][FAILED] + results["summary"][ERROR]:
        progress(f"kept the failed run's logs and data in {work_dir}")
    elif not args.keep_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    del embedded  # the embedded server, if any, stops with the last process using it
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # uvloop, as the service runs: the scenarios' client is one Python process, and at the overload
    # levels its own cost per request is what limits the rate it can offer.
    results = uvloop.run(run(args))
    for path in report.write(results, args.output_dir):
        progress(f"wrote {path}")
    broken = results["summary"][FAILED] + results["summary"][ERROR]
    return 1 if broken else 0

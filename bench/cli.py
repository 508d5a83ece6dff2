"""`python -m bench`: the command line of a benchmark run (see bench/run.py for what it does)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import report
from bench.config import ENDPOINTS, QUICK, SERVERS, Config, mix_from_env
from bench.run import Bench
from bench.tools import find_wrk, pick_cpus


def names(text: str, known: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(chosen) - set(known)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the service, baseline and ceiling.")
    p.add_argument("--duration", type=int, help="seconds per measured run (whole seconds; default 10)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up before each endpoint (default 3; 0: none)")
    p.add_argument("--repetitions", type=int, help="interleaved rounds per endpoint, one run of each server (3)")
    p.add_argument("--endpoints", type=lambda text: names(text, ENDPOINTS), help=f"of {','.join(ENDPOINTS)}")
    p.add_argument("--servers", type=lambda text: names(text, SERVERS), help=f"of {','.join(SERVERS)}")
    p.add_argument("--output-dir", type=Path, help="where results go (default bench/results)")
    p.add_argument("--users", type=int, help="users seeded (default 10000)")
    p.add_argument("--logins", type=int, help="tokens obtained by logging in (default 50)")
    p.add_argument("--fixed-rate-share", type=float, help="pace the fixed-rate run at this share of saturation (0.7)")
    p.add_argument("--no-tracing", action="store_true", help="skip the tracing-overhead runs")
    p.add_argument("--tracing-repetitions", type=int, help="rounds of the tracing block (default: --repetitions)")
    p.add_argument("--no-allocations", action="store_true", help="skip the tracemalloc pass")
    p.add_argument("--quick", action="store_true", help="1 s runs, 1 round, 1 s warm-up, fewer users")
    p.add_argument(
        "--service-setting",
        dest="service_settings",
        type=service_setting,
        action="append",
        metavar="AUTH_NAME=VALUE",
        help="run the service with this setting instead of its default (repeatable; named in the report)",
    )
    return p


def service_setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not (equals and name.startswith("AUTH_")):
        raise argparse.ArgumentTypeError(f"expected AUTH_NAME=VALUE, got {text!r}")
    return name, value


def config_from(args: argparse.Namespace) -> Config:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    names = ("duration", "warmup", "repetitions", "endpoints", "servers", "output_dir", "users", "logins")
    for name in (*names, "fixed_rate_share", "tracing_repetitions"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.no_tracing:
        values["tracing_ratios"] = ()
    if args.no_allocations:
        values["allocation_requests"] = 0
    if args.service_settings:
        values["service_settings"] = dict(args.service_settings)
    server_cpu, client_cpu, allowed = pick_cpus()
    config = Config(**values, mix=mix_from_env(), server_cpu=server_cpu, client_cpu=client_cpu, cpus_allowed=allowed)
    if config.duration < 1 or config.repetitions < 1 or (config.tracing_repetitions or 1) < 1:
        raise SystemExit("--duration and --repetitions (and --tracing-repetitions) must be at least 1")
    if not 0 < config.fixed_rate_share <= 1:
        raise SystemExit("--fixed-rate-share must be above 0 and at most 1")
    return replace(config, hot_set=min(config.hot_set, config.users), logins=min(config.logins, config.users))


def main(argv: list[str] | None = None) -> int:
    config = config_from(parser().parse_args(argv))
    wrk_path = find_wrk()
    if wrk_path is None:
        raise SystemExit("wrk is not on PATH nor in .tools/bin: `make bench-tools` installs it")
    # This process only waits and reads /proc meanwhile: it stays off the server's CPU.
    os.sched_setaffinity(0, {config.client_cpu})
    results = Bench(config, wrk_path).run()
    for path in report.write(results, config.output_dir):
        print(f"wrote {path}")
    return 1 if results["problems"] else 0

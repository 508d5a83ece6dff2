"""Topologies on one machine: one service process against two on one address, and the hashing in the hot
process against a process of its own. `python -m bench.topology` (make bench-topology) writes
bench/results/topology-latest.json and topology-latest.md, and a dated copy of each.

Replicas. The mix less its hashing, in a closed loop (wrk), against one process pinned to one CPU, then
against two processes on one port (AUTH_REUSE_PORT: SO_REUSEPORT, the kernel spreading the
connections), one per CPU; in interleaved rounds, fresh processes each time. What carries over to a
cluster is the service's CPU per request, summed over the replicas: sharing PostgreSQL and the NOTIFY
channel (every update is delivered to every replica) shows there as a rise. The rate does not: this
machine has 2 CPUs, and wrk and PostgreSQL run on the second, beside the second replica.

Hashing placement. Hot requests (the mix less its hashing) and logins (one argon2id hash each) paced
at once, the logins at the mix's share of hashing requests, the whole at --core-share of one core by
the costs the replicas block measured: both to one process (its argon2 thread beside its loop on its
one CPU), then the logins to a second process on the other CPU, as a hashing tier would take them. The
hot requests' latency at the client in each is the figure; then again in a login surge (--surge times
the logins), where the one process's hashing wants more than its core has. The second CPU also runs wrk and
PostgreSQL: the tier's hashing there competes with them, not with the hot loop, which is what a tier of
its own pods does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from auth_service.services import driver_dsn
from bench import database, machine, measure, seed, servers, wrk
from bench.config import DEFAULT_MIX, MIXED_NO_HASHING, RESULTS_DIR, Config, hashing_share
from bench.runner import Runner
from bench.servers import Server
from bench.tools import find_wrk, pick_cpus, wrk_version

INVALIDATIONS = "cache_invalidations_received_total"


@dataclass(frozen=True)
class Options:
    duration: int = 10
    warmup: int = 3
    rounds: int = 3
    users: int = 10_000
    # The pace of the hashing block: the mix (its hot requests and its logins) at this share of what one
    # core serves of it, from the costs the replicas block measured (CPU per hot request, per login).
    # At 35% of the hot requests' own saturation instead, with the logins at their share of the mix,
    # the one process had 1.08 cores of work: its hot p99 was its overload's (63 ms).
    core_share: float = 0.5
    # Then a login surge: the same hot pace, the logins this many times their share of the mix (a
    # one-core pod's hashing then wants more than the core has beside the hot requests).
    surge: float = 3.0
    output_dir: Path = RESULTS_DIR


@dataclass(frozen=True)
class Measured:
    """One wrk run against a set of processes: what the client saw and what each process spent."""

    results: tuple[wrk.WrkResult, ...]  # of each wrk run at once: the first is the one measured
    cpu_s: list[float]  # each process's
    database_cpu_s: float | None
    invalidations: list[float]  # NOTIFYs each process received meanwhile

    @property
    def result(self) -> wrk.WrkResult:
        return self.results[0]

    def per_request_us(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.result.requests else seconds / self.result.requests * 1e6


class Topology:
    def __init__(self, options: Options, wrk_path: str) -> None:
        server_cpu, client_cpu, allowed = pick_cpus()
        self.options, self.wrk_path = options, wrk_path
        self.cpus = (server_cpu, client_cpu)
        config = Config(output_dir=options.output_dir, users=options.users, server_cpu=server_cpu)
        self.config = replace(config, client_cpu=client_cpu, cpus_allowed=allowed)
        self.dataset = seed.Dataset(self.config.work_dir / "topology-data", [], self.config.hot_set)
        self.runner = Runner(self.config, wrk_path, self.dataset)
        self.keys, self.batch_token = servers.signing_keys(), secrets.token_urlsafe(32)
        self.env: dict[str, str] = {}
        self.postmaster: int | None = None

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        with database.database_server(self.config.client_cpu) as server, database.fresh_database(server.url) as url:
            self.postmaster = server.postmaster
            common = servers.common_env(driver_dsn(url), self.keys, self.batch_token)
            self.env = common | servers.ONE_CLIENT_SETTINGS
            self.seed()
            replicas = summarise_replicas(self.replicas())
            hot_us, login_us = replicas["one_cpu_us_per_request"], replicas["login_cpu_us_per_request"]
            hot_rps, login_rps = paces(hot_us, login_us, self.options.core_share)
            placement = self.placement("placement", hot_rps, login_rps)
            surge = self.placement("surge", hot_rps, login_rps * self.options.surge)
            versions = machine.versions(wrk_version(self.wrk_path), database.server_version(url))
        return {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine.machine(*self.cpus, self.config.cpus_allowed),
            "versions": versions,
            "database": server.where,
            "settings": {
                "core_share": self.options.core_share,
                "surge": self.options.surge,
                "duration_s": self.options.duration,
                "rounds": self.options.rounds,
                "users": self.options.users,
            },
            "replicas": replicas,
            "placement": summarise_placement(placement),
            "surge": summarise_placement(surge),
            "elapsed_s": round(time.monotonic() - started, 1),
        }

    # --- data

    def seed(self) -> None:
        with self.one_process() as service:
            users = seed.import_users(service.url, self.batch_token, self.options.users)
        self.dataset = replace(self.dataset, users=users)
        self.runner.dataset = self.dataset
        self.dataset.write_users()

    def renew_tokens(self, url: str) -> None:
        """Fresh tokens for each round's processes: a whole run may outlast a token."""
        self.dataset.write_tokens(seed.fresh_tokens(url, self.dataset.users, self.config.logins))

    # --- processes

    @contextlib.contextmanager
    def one_process(self, name: str = "one") -> Iterator[Server]:
        log = self.config.work_dir / "logs" / f"topology-{name}.log"
        with servers.running_service(self.cpus[0], self.env, log) as service:
            yield service

    @contextlib.contextmanager
    def two_processes(self, name: str) -> Iterator[list[Server]]:
        with servers.running_replicas(list(self.cpus), self.env, self.config.work_dir / "logs" / name) as replicas:
            yield replicas

    @contextlib.contextmanager
    def two_apart(self) -> Iterator[list[Server]]:
        """Two processes on ports of their own: the hot one on the first CPU, the hashing one on the second."""
        logs = self.config.work_dir / "logs"
        with (
            servers.running_service(self.cpus[0], self.env, logs / "topology-hot.log") as hot,
            servers.running_service(self.cpus[1], self.env, logs / "topology-hashing.log") as hashing,
        ):
            yield [hot, hashing]

    # --- the blocks

    def replicas(self) -> list[dict[str, Any]]:
        found = []
        for round_index in range(self.options.rounds):
            entry = {}
            with self.one_process() as service:
                entry["one"] = self.saturated([service])
                entry["login"] = self.saturated([service], "login")
            with self.two_processes(f"topology-two-{round_index}") as pair:
                entry["two"] = self.saturated(pair)
            one, two = entry["one"]["rps"], entry["two"]["rps"]
            progress(f"replicas round {round_index + 1}: {one:,.0f} rps on one process, {two:,.0f} on two")
            found.append(entry)
        return found

    def saturated(self, processes: list[Server], endpoint: str = MIXED_NO_HASHING) -> dict[str, Any]:
        """A closed loop of the endpoint (wrk's connections for it: 8 for logins, 64 for the rest)."""
        self.renew_tokens(processes[0].url)
        load = self.runner.load(endpoint)
        url, client = processes[0].url, self.cpus[1]
        wrk.run(self.wrk_path, client, url, load, self.options.warmup)
        run = self.measured(processes, lambda: (wrk.run(self.wrk_path, client, url, load, self.options.duration),))
        return describe(run)

    def placement(self, block: str, hot_rps: float, login_rps: float) -> list[dict[str, Any]]:
        found = []
        for round_index in range(self.options.rounds):
            entry = {}
            with self.one_process("same") as service:
                entry["same"] = self.paced([service], service, service, hot_rps, login_rps)
            with self.two_apart() as (hot, hashing):
                entry["tier"] = self.paced([hot, hashing], hot, hashing, hot_rps, login_rps)
            progress(
                f"{block} round {round_index + 1}: hot p99 {entry['same']['hot']['p99_ms']:.2f} ms beside the "
                f"hashing, {entry['tier']['hot']['p99_ms']:.2f} ms apart"
            )
            found.append(entry)
        return found

    def paced(
        self, processes: list[Server], hot: Server, hashing: Server, hot_rps: float, login_rps: float
    ) -> dict[str, Any]:
        """The hot requests and the logins at their paces at once, each from a wrk of its own."""
        self.renew_tokens(hot.url)
        hot_load, login_load = self.runner.load(MIXED_NO_HASHING, hot_rps), self.runner.load("login", login_rps)
        seconds = self.options.duration

        def both() -> tuple[wrk.WrkResult, wrk.WrkResult]:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                logins = pool.submit(wrk.run, self.wrk_path, self.cpus[1], hashing.url, login_load, seconds)
                return wrk.run(self.wrk_path, self.cpus[1], hot.url, hot_load, seconds), logins.result()

        run = self.measured(processes, both)
        return {
            "hot_rps_target": round(hot_rps),
            "login_rps_target": round(login_rps, 1),
            "hot": describe(run),
            "login": result_figures(run.results[1]),
        }

    # --- measuring

    def measured(self, processes: list[Server], load: Callable[[], tuple[wrk.WrkResult, ...]]) -> Measured:
        before = [measure.cpu_seconds(process.pid) for process in processes]
        received = [invalidations(process) for process in processes]
        database_before = self.database_cpu_s()
        results = load()
        database_after = self.database_cpu_s()
        for process in processes:
            servers.check_alive(process)
        return Measured(
            results,
            [measure.cpu_seconds(process.pid) - spent for process, spent in zip(processes, before, strict=True)],
            None if database_before is None or database_after is None else database_after - database_before,
            [invalidations(process) - count for process, count in zip(processes, received, strict=True)],
        )

    def database_cpu_s(self) -> float | None:
        return measure.tree_cpu_seconds(self.postmaster) if self.postmaster is not None else None


def paces(hot_us: float, login_us: float, core_share: float) -> tuple[float, float]:
    """(hot requests/s, logins/s): the mix at `core_share` of one core, its logins at the mix's share of hashing."""
    share = hashing_share(DEFAULT_MIX)
    mix_us = (1 - share) * hot_us + share * login_us
    rate = core_share * 1e6 / mix_us
    return rate * (1 - share), rate * share


def invalidations(process: Server) -> float:
    """The NOTIFYs of updates this process has received (its admin port's counter)."""
    if process.admin_url is None:
        return 0.0
    text = httpx.get(f"{process.admin_url}/metrics", timeout=5.0).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(INVALIDATIONS))


def result_figures(result: wrk.WrkResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "rps": round(result.rps, 1),
        "errors": result.errors,
        "shed": result.shed,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "p999_ms": result.p999_ms,
    }


def describe(run: Measured) -> dict[str, Any]:
    """The client's figures, and the CPU per request: the service's (all its processes) and the database's."""
    return result_figures(run.result) | {
        "processes": len(run.cpu_s),
        "service_cpu_us_per_request": rounded(run.per_request_us(sum(run.cpu_s))),
        "each_process_cpu_s": [round(spent, 2) for spent in run.cpu_s],
        "database_cpu_us_per_request": rounded(run.per_request_us(run.database_cpu_s)),
        "invalidations_received": [round(count) for count in run.invalidations],
        "wrk_cpu_pct": round(run.result.client_cpu_pct, 1),
    }


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def median_of(entries: list[dict[str, Any]], *path: str) -> float | None:
    """The median over the rounds of the figure at `path` in each (None where none has it)."""
    values: list[float] = []
    for entry in entries:
        found: Any = entry
        for key in path:
            found = found[key]
        if isinstance(found, int | float):
            values.append(float(found))
    return round(statistics.median(values), 2) if values else None


def ratio_median(
    entries: list[dict[str, Any]], numerator: tuple[str, ...], denominator: tuple[str, ...]
) -> float | None:
    """The median over the rounds of each round's ratio: a host that changes speed between rounds moves both."""
    ratios = []
    for entry in entries:
        top, bottom = median_of([entry], *numerator), median_of([entry], *denominator)
        if top is not None and bottom:
            ratios.append(top / bottom)
    return round(statistics.median(ratios), 3) if ratios else None


def summarise_replicas(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = "service_cpu_us_per_request"
    return {
        "method": "the mix less its hashing, closed loop; one process on one CPU, then two on one port (SO_REUSEPORT)",
        "one_rps": median_of(rounds, "one", "rps"),
        "two_rps": median_of(rounds, "two", "rps"),
        "two_vs_one_rps": ratio_median(rounds, ("two", "rps"), ("one", "rps")),
        "one_cpu_us_per_request": median_of(rounds, "one", cpu),
        "two_cpu_us_per_request": median_of(rounds, "two", cpu),
        # Above 1: what each request costs more with a second replica sharing the database and NOTIFY.
        "two_vs_one_cpu_per_request": ratio_median(rounds, ("two", cpu), ("one", cpu)),
        "one_database_cpu_us_per_request": median_of(rounds, "one", "database_cpu_us_per_request"),
        "login_cpu_us_per_request": median_of(rounds, "login", "service_cpu_us_per_request"),
        "two_database_cpu_us_per_request": median_of(rounds, "two", "database_cpu_us_per_request"),
        "rounds": rounds,
    }


def summarise_placement(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "method": (
            "hot requests (the mix less its hashing) and logins paced at once, the logins at the mix's share of "
            "hashing requests: to one process, then the logins to a second process on the other CPU"
        ),
        "hot_rps_target": rounds[0]["same"]["hot_rps_target"] if rounds else None,
        "login_rps_target": rounds[0]["same"]["login_rps_target"] if rounds else None,
        "same_hot_p50_ms": median_of(rounds, "same", "hot", "p50_ms"),
        "same_hot_p99_ms": median_of(rounds, "same", "hot", "p99_ms"),
        "same_hot_p999_ms": median_of(rounds, "same", "hot", "p999_ms"),
        "tier_hot_p50_ms": median_of(rounds, "tier", "hot", "p50_ms"),
        "tier_hot_p99_ms": median_of(rounds, "tier", "hot", "p99_ms"),
        "tier_hot_p999_ms": median_of(rounds, "tier", "hot", "p999_ms"),
        # Below 1: the hot requests' p99 is that much lower with the hashing in a process of its own.
        "tier_vs_same_hot_p99": ratio_median(rounds, ("tier", "hot", "p99_ms"), ("same", "hot", "p99_ms")),
        "same_login_p99_ms": median_of(rounds, "same", "login", "p99_ms"),
        "tier_login_p99_ms": median_of(rounds, "tier", "login", "p99_ms"),
        "rounds": rounds,
    }


def markdown(results: dict[str, Any]) -> str:
    replicas = results["replicas"]
    lines = [
        f"# Topologies on one machine ({results['date']})",
        "",
        f"Machine: {results['machine']}. Database: {results['database']}. "
        f"{results['settings']['rounds']} rounds of {results['settings']['duration_s']} s runs; "
        "medians over the rounds.",
        "",
        "## One replica against two on one address",
        "",
        "| | one process | two processes | two / one |",
        "|---|---|---|---|",
        f"| requests/s | {replicas['one_rps']} | {replicas['two_rps']} | {replicas['two_vs_one_rps']} |",
        f"| service CPU per request (µs) | {replicas['one_cpu_us_per_request']} | "
        f"{replicas['two_cpu_us_per_request']} | {replicas['two_vs_one_cpu_per_request']} |",
        f"| PostgreSQL CPU per request (µs) | {replicas['one_database_cpu_us_per_request']} | "
        f"{replicas['two_database_cpu_us_per_request']} | |",
        "",
        "The second replica shares its CPU with wrk and PostgreSQL: the rate cannot double here. The CPU per "
        "request is what carries over to a cluster of one-core pods.",
        "",
        "## The hashing beside the hot loop, or in a process of its own",
        "",
        f"The mix at {results['settings']['core_share']:.0%} of one core, by the costs measured above (a hot "
        f"request {replicas['one_cpu_us_per_request']} µs, a login {replicas['login_cpu_us_per_request']} µs); "
        f"then the same with {results['settings']['surge']:g} times the logins (a surge).",
        "",
        *placement_table("the mix", results["placement"]),
        *placement_table("a login surge", results["surge"]),
    ]
    return "\n".join(lines)


def placement_table(name: str, placement: dict[str, Any]) -> list[str]:
    rates = f"hot requests {placement['hot_rps_target']}/s, logins {placement['login_rps_target']}/s"
    return [
        f"| {name} ({rates}) | hot p50 (ms) | hot p99 (ms) | hot p99.9 (ms) | logins p99 (ms) |",
        "|---|---|---|---|---|",
        f"| hashing in the same process | {placement['same_hot_p50_ms']} | {placement['same_hot_p99_ms']} | "
        f"{placement['same_hot_p999_ms']} | {placement['same_login_p99_ms']} |",
        f"| hashing in another process | {placement['tier_hot_p50_ms']} | {placement['tier_hot_p99_ms']} | "
        f"{placement['tier_hot_p999_ms']} | {placement['tier_login_p99_ms']} |",
        "",
        f"Hot p99 apart / beside: {placement['tier_vs_same_hot_p99']} (the median of the rounds' ratios).",
        "",
    ]


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M")
    written = []
    for name in ("topology-latest", f"topology-{stamp}"):
        json_path, md_path = directory / f"{name}.json", directory / f"{name}.md"
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        md_path.write_text(markdown(results))
        written += [json_path, md_path]
    return written


def progress(text: str) -> None:
    print(f"bench.topology: {text}", file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    defaults = Options()
    found = argparse.ArgumentParser(prog="python -m bench.topology", description=__doc__.split("\n\n")[0])
    found.add_argument("--duration", type=int, default=defaults.duration, help="seconds per measured run")
    found.add_argument("--warmup", type=int, default=defaults.warmup, help="seconds of warm-up before each")
    found.add_argument("--rounds", type=int, default=defaults.rounds, help="interleaved rounds of each block")
    found.add_argument("--users", type=int, default=defaults.users, help="users seeded")
    found.add_argument(
        "--core-share", type=float, default=defaults.core_share, help="the hashing block's mix, as a share of one core"
    )
    found.add_argument("--surge", type=float, default=defaults.surge, help="the surge's logins, times the mix's")
    found.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    found.add_argument("--quick", action="store_true", help="2 s runs, 1 round, 1 s warm-up, 2,000 users")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = Options(args.duration, args.warmup, args.rounds, args.users, args.core_share, args.surge, args.output_dir)
    if args.quick:
        options = replace(options, duration=2, warmup=1, rounds=1, users=2_000)
    if options.duration < 1 or options.rounds < 1 or not 0 < options.core_share < 1 or options.surge <= 0:
        raise SystemExit("--duration, --rounds: at least 1; --core-share: above 0, below 1; --surge: above 0")
    wrk_path = find_wrk()
    if wrk_path is None:
        raise SystemExit("wrk is not on PATH nor in .tools/bin: `make bench-tools` installs it")
    topology = Topology(options, wrk_path)
    os.sched_setaffinity(0, {topology.cpus[1]})  # this process waits and reads /proc: off the servers' CPU
    results = topology.run()
    for path in write(results, options.output_dir):
        print(f"wrote {path}")
    errors = [
        entry
        for block in ("replicas", "placement", "surge")
        for entry in results[block]["rounds"]
        for run in entry.values()
        if any(figures.get("errors") for figures in (run, run.get("hot", {}), run.get("login", {})))
    ]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

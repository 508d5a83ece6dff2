"""A benchmark run: the service, the baseline and the ceiling measured on the same endpoints and data.

Each server one process pinned to the same CPU. The service starts first and seeds the data; the
baseline and the ceiling start beside it, and every endpoint is measured on the servers that serve it
in interleaved rounds (bench/rounds.py), the others idle meanwhile. Then user_miss, on the service with
a one-entry cache and the baseline; the service with tracing at each sampling ratio, in rounds of its
own; the allocation pass in this process. Results go to --output-dir.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from auth_service.services import driver_dsn
from bench import (
    allocations,
    database,
    machine,
    method,
    ratios,
    rounds,
    seed,
    servers,
    stats,
    steadiness,
    targets,
    tracing,
)
from bench.config import DISTURBED_PCT, ENDPOINTS, MIXED_NO_HASHING, SERVERS, Config, hashing_share
from bench.runner import Runner
from bench.servers import Server
from bench.tools import wrk_version

# Measured with the service as shipped, in this order; user_miss comes after, on a service of its own.
SHARED_ENDPOINTS = ("verify", "user_hit", "login", "create", "update", "mixed")
# Measured in the rounds of another endpoint, on the service: the mix less its hashing, beside the mix.
BESIDE = {"mixed": MIXED_NO_HASHING}
MISS_CACHE_ENTRIES = 1


class Bench:
    def __init__(self, config: Config, wrk_path: str) -> None:
        self.config = config
        self.wrk_path = wrk_path
        self.keys = servers.signing_keys()
        self.batch_token = secrets.token_urlsafe(32)
        self.dataset = seed.Dataset(config.work_dir / "data", [], config.hot_set)
        self.runner = Runner(config, wrk_path, self.dataset)
        self.env: dict[str, str] = {}
        self.service_env: dict[str, str] = {}
        self.database_url = ""
        self.results: dict[str, Any] = {"endpoints": {}, "problems": [], "notes": [], "host_speed": []}

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        with (
            database.database_server(self.config.client_cpu) as server,
            database.fresh_database(server.url) as url,
        ):
            self.database_url = url
            self.runner.postmaster = server.postmaster
            self.env = servers.common_env(driver_dsn(url), self.keys, self.batch_token)
            self.service_env = self.env | servers.ONE_CLIENT_SETTINGS | self.config.service_settings
            self.results |= self.describe(url)
            self.results["settings"]["database"] = server.where
            self.endpoints()
            self.probe_speed("before tracing")
            self.attempt("tracing overhead", self.tracing)
            self.attempt("allocations", self.allocations)
            self.probe_speed("at the end")
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        unsteady = steadiness.unsteady(self.results["host_speed"])
        if unsteady:
            self.note(unsteady)
        self.results["ratios"] = ratios.summary(self.results)
        self.results["targets"] = targets.evaluate(self.results)
        self.results["mixed_breakdown"] = targets.mixed_breakdown(self.results, hashing_share(self.config.mix))
        self.results["latency_breakdown"] = targets.latency_breakdown(self.results)
        return self.results

    def describe(self, url: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        config = self.config
        return {
            "date": now.strftime("%Y-%m-%d %H:%M UTC"),
            "date_stamp": now.strftime("%Y-%m-%d-%H%M"),
            "machine": machine.machine(config.server_cpu, config.client_cpu, config.cpus_allowed),
            "versions": machine.versions(wrk_version(self.wrk_path), database.server_version(url)),
            "settings": settings(config),
            "method": method.notes(config),
        }

    # --- the blocks

    def endpoints(self) -> None:
        """The service as shipped seeds the data and writes the ceiling's answers; the baseline and the
        ceiling then start beside it, and each endpoint is measured on them all in rounds."""
        with contextlib.ExitStack() as references:
            log = self.log("service")
            with servers.running_service(self.config.server_cpu, self.service_env, log) as service:
                self.seed(service)
                self.write_ceiling_responses(service)
                others = self.start_references(references)
                for endpoint in SHARED_ENDPOINTS:
                    # Fresh tokens for each endpoint: the service stays up longer than a token lives.
                    self.renew_tokens(service)
                    self.in_rounds(endpoint, {"service": service} | others)
            # The service stops first: a second one would also hear every update's NOTIFY.
            self.attempt("service with a one-entry cache", lambda: self.user_miss(others))

    def start_references(self, stack: contextlib.ExitStack) -> dict[str, Server]:
        """The baseline and the ceiling, when measured, left running until `stack` closes."""
        cpu, responses = self.config.server_cpu, self.config.work_dir / "ceiling-responses.json"
        starts = {
            "baseline": lambda: servers.running_baseline(cpu, self.env, self.log("baseline")),
            "ceiling": lambda: servers.running_ceiling(cpu, responses, self.log("ceiling")),
        }
        found = {}
        for name, start in starts.items():
            if any(self.config.measures(name, endpoint) for endpoint in ENDPOINTS):
                try:
                    found[name] = stack.enter_context(start())
                except servers.ServerFailed as exc:
                    self.problem(f"{name}: {exc}")
        return found

    def user_miss(self, references: dict[str, Server]) -> None:
        """user_miss: the service with a one-entry cache (nearly every read goes to PostgreSQL) and the baseline."""
        if not self.config.measures("service", "user_miss"):
            self.in_rounds("user_miss", references)
            return
        env = self.service_env | {"AUTH_CACHE_MAX_ENTRIES": str(MISS_CACHE_ENTRIES)}
        with servers.running_service(self.config.server_cpu, env, self.log("service-miss")) as service:
            self.renew_tokens(service)
            self.in_rounds("user_miss", references | {"service": service})
        entry = self.results["endpoints"].get("user_miss", {}).get("service")
        if entry is not None:
            entry["cache_max_entries"] = MISS_CACHE_ENTRIES

    def in_rounds(self, endpoint: str, running: dict[str, Server]) -> None:
        """The endpoint on each running server that serves it, in SERVERS' order, round by round."""
        subjects = [rounds.Subject(running[name], endpoint) for name in SERVERS if name in running]
        subjects = [subject for subject in subjects if self.config.measures(subject.server.name, endpoint)]
        beside = BESIDE.get(endpoint)
        if beside and "service" in running and self.config.measures("service", beside):
            subjects.append(rounds.Subject(running["service"], beside))
        if not subjects:
            return
        self.probe_speed(f"before {endpoint}")
        started = time.monotonic()
        entries = rounds.measure(self.runner, subjects, self.failed)
        took = time.monotonic() - started
        for (measured, name), entry in entries.items():
            self.results["endpoints"].setdefault(measured, {})[name] = entry
            progress(f"{name} {measured}: {summary_line(entry)}")
            self.check_entry(name, measured, entry)
        progress(f"{endpoint}: {len(subjects)} servers in {self.config.repetitions} rounds ({took:.0f} s)")

    def tracing(self) -> None:
        """Tracing off and at each ratio, in rounds: each round runs every setting once, in a fresh process.

        Interleaved so that a host that speeds up or slows down during the block moves every setting
        alike; each setting's cost is the median, over the rounds, of its change against the same
        round's run with tracing off (fresh processes of the same settings differ by up to 9% here).
        """
        endpoints = [e for e in tracing.ENDPOINTS if e in self.config.endpoints]
        if not (endpoints and self.config.tracing_ratios and "service" in self.config.servers):
            return
        with tracing.running_sink(self.config.client_cpu, self.log("sink")) as sink:
            settings: dict[str, dict[str, str]] = {"off": {}} | {
                f"{ratio:g}": tracing.otel_env(ratio, sink) for ratio in self.config.tracing_ratios
            }
            exported = dict.fromkeys(settings, 0)
            reps: dict[str, dict[str, list[stats.Rep]]] = {name: {e: [] for e in endpoints} for name in settings}
            retried = {name: dict.fromkeys(endpoints, 0) for name in settings}
            for _ in range(self.config.tracing_repetitions or self.config.repetitions):
                for name, otel in settings.items():
                    before = tracing.exports(sink)
                    for endpoint, (rep, retries) in self.traced_round(self.service_env | otel, endpoints, name).items():
                        reps[name][endpoint].append(rep)
                        retried[name][endpoint] += retries
                    exported[name] += tracing.exports(sink) - before
        off = reps.pop("off")

        def summaries(
            name: str, runs: dict[str, list[stats.Rep]], against: dict[str, list[stats.Rep]] | None
        ) -> dict[str, Any]:
            return {
                e: tracing.summary(runs[e], retried[name][e], against[e] if against is not None else None)
                for e in endpoints
            }

        self.results["tracing"] = {
            "method": tracing.METHOD,
            "off": summaries("off", off, None),
            "ratios": {name: summaries(name, runs, off) | {"exports": exported[name]} for name, runs in reps.items()},
        }

    def traced_round(self, env: dict[str, str], endpoints: list[str], name: str) -> dict[str, tuple[stats.Rep, int]]:
        """One fresh service with these settings: a warm-up and one measured run per endpoint (and its retries)."""
        with servers.running_service(self.config.server_cpu, env, self.log(f"tracing-{name}")) as service:
            self.renew_tokens(service)
            found = {}
            for endpoint in endpoints:
                self.runner.warm_up(service, endpoint)
                found[endpoint] = self.runner.measured_run(service, endpoint)
            return found

    def allocations(self) -> None:
        if self.config.allocation_requests <= 0:
            return
        settings = allocations.settings_like_service(self.database_url, self.keys)
        token, user_id = self.dataset.first_token(), self.dataset.first_hot_id()
        found = allocations.allocations(settings, token, user_id, self.config.allocation_requests)
        self.results["allocations"] = {"method": allocations.__doc__.strip() if allocations.__doc__ else ""} | found

    # --- data

    def seed(self, service: Server) -> None:
        users = seed.import_users(service.url, self.batch_token, self.config.users)
        self.dataset = replace(self.dataset, users=users)
        self.runner.dataset = self.dataset
        self.dataset.write_users()
        self.renew_tokens(service)

    def renew_tokens(self, service: Server) -> None:
        """Fresh tokens from real logins: a full run lasts longer than a token (15 min)."""
        self.dataset.write_tokens(seed.fresh_tokens(service.url, self.dataset.users, self.config.logins))

    def write_ceiling_responses(self, service: Server) -> None:
        """The exact bodies the service gives for one verify and one user read, for the ceiling to repeat."""
        with httpx.Client(base_url=service.url) as client:
            bearer = {"Authorization": f"Bearer {self.dataset.first_token()}"}
            verify = client.get("/v1/auth/verify", headers=bearer)
            user = client.get(f"/v1/users/{self.dataset.first_hot_id()}")
        for response in (verify, user):
            response.raise_for_status()
        routes = [
            route("/v1/auth/verify", verify.content.decode()),
            route("/v1/users/", user.content.decode()),
            route("/healthz", '{"status":"ok"}'),
        ]
        path = self.config.work_dir / "ceiling-responses.json"
        path.write_text(json.dumps({"routes": routes}, indent=2))

    # --- bookkeeping

    def probe_speed(self, when: str) -> None:
        try:
            self.results["host_speed"].append(steadiness.probe(self.config.server_cpu, when))
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            self.problem(f"speed probe {when}: {exc}")

    def check_entry(self, server: str, endpoint: str, entry: dict[str, Any]) -> None:
        if float(entry["error_rate"]) > 0.001:
            self.problem(f"{server} {endpoint}: {entry['errors']} errors in {entry['requests']} requests")
        if entry.get("shed"):
            self.note(
                f"{server} {endpoint}: {entry['shed']} of {entry['requests']} requests shed at saturation "
                "(503 with Retry-After: the password-hashing pool was full)"
            )
        paced_requests = int(entry.get("fixed_requests", 0))
        paced_failed = int(entry.get("fixed_errors", 0)) + int(entry.get("fixed_shed", 0))
        if paced_requests and paced_failed > 0.001 * paced_requests:
            self.problem(f"{server} {endpoint}: {paced_failed} errors or 503s in {paced_requests} paced requests")
        client, own = float(entry["client_cpu_pct"]), float(entry["cpu_pct"])
        if entry["load_generator_bound"]:
            both = own >= stats.LOAD_GENERATOR_BOUND_PCT
            limit = "both near their limit: the rps may be a little low" if both else "the rps is a lower bound"
            self.note(
                f"{server} {endpoint}: bound by the load generator: wrk used {client:.0f}% of its core and the "
                f"server {own:.0f}% of its own; {limit}"
            )

    def failed(self, subject: rounds.Subject, exc: Exception) -> None:
        self.problem(f"{subject.server.name} {subject.endpoint}: {exc}")

    def note(self, text: str) -> None:
        progress(f"note: {text}")
        self.results["notes"].append(text)

    def attempt(self, what: str, block: Callable[[], None]) -> None:
        """Run a block; a server that fails is reported and the run goes on without it."""
        try:
            block()
        except (servers.ServerFailed, RuntimeError, httpx.HTTPError, OSError) as exc:
            self.problem(f"{what}: {exc}")

    def problem(self, text: str) -> None:
        progress(f"problem: {text}")
        self.results["problems"].append(text)

    def log(self, name: str) -> Path:
        return self.config.work_dir / "logs" / f"{name}.log"


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def summary_line(entry: dict[str, Any]) -> str:
    paced = (
        f"; paced at {entry['fixed_rate_rps']:,.0f} rps: p99 {entry['fixed_p99_ms']:.2f} ms"
        if "fixed_p99_ms" in entry
        else ""
    )
    spread = f"{entry['rps_min']:,.0f}-{entry['rps_max']:,.0f}"
    return f"{entry['rps']:,.0f} rps ({spread}), p99 {entry['p99_ms']:.2f} ms, {entry['errors']} errors{paced}"


def route(prefix: str, body: str) -> dict[str, Any]:
    return {"method": "GET", "prefix": prefix, "status": 200, "body": body, "content_type": "application/json"}


def settings(config: Config) -> dict[str, Any]:
    return {
        "duration_s": config.duration,
        "warmup_s": config.warmup,
        "repetitions": config.repetitions,
        "users": config.users,
        "hot_set": config.hot_set,
        "tokens": config.logins,
        "connections": config.connections,
        "hashing_connections": config.hashing_connections,
        "fixed_rate_share": config.fixed_rate_share,
        "mix_pct": config.mix,
        "service_settings": config.service_settings,
        "one_client_settings": servers.ONE_CLIENT_SETTINGS,
        "tracing_ratios": list(config.tracing_ratios),
        "tracing_repetitions": config.tracing_repetitions or config.repetitions,
        "allocation_requests": config.allocation_requests,
        "retries_of_disturbed_runs": config.retries,
        "disturbed_pct": DISTURBED_PCT,
        "user_miss_cache_max_entries": MISS_CACHE_ENTRIES,
        "load_generator_bound_pct": stats.LOAD_GENERATOR_BOUND_PCT,
    }

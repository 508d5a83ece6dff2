"""The results written out: JSON (latest and a dated copy), a markdown report and a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import chart, steadiness, targets
from bench.config import REPORTED_ENDPOINTS, SERVERS


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    """latest.json, YYYY-MM-DD-HHMM.json, latest.md and latest.png in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    written = [directory / "latest.json", directory / f"{results['date_stamp']}.json"]
    for path in written:
        path.write_text(text)
    written.append(directory / "latest.md")
    written[-1].write_text(markdown(results))
    written.append(chart.write(results, directory / "latest.png"))
    return written


def markdown(results: dict[str, Any]) -> str:
    sections = [
        header(results),
        saturation_table(results),
        ratios_table(results),
        database_table(results),
        paced_table(results),
        gc_table(results),
        tracing_table(results),
        allocation_table(results),
        targets_table(results),
        mixed_breakdown(results),
        latency_breakdown(results),
        method(results),
        problems(results),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def entries(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(endpoint, server, entry) in the report's order."""
    found = []
    for endpoint in REPORTED_ENDPOINTS:
        for server in SERVERS:
            entry = results["endpoints"].get(endpoint, {}).get(server)
            if entry is not None:
                found.append((endpoint, server, entry))
    return found


def header(results: dict[str, Any]) -> str:
    m, v, s = results["machine"], results["versions"], results["settings"]
    stack = ", ".join(f"{name} {version}" for name, version in v.items())
    return "\n".join(
        [
            f"# auth-service benchmark, {results['date']}",
            "",
            f"- Machine: {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, {m['memory_gib']} GiB; "
            f"load average at start {m['load_average_at_start']}; server on CPU {m['server_cpu']}, "
            f"wrk on CPU {m['client_cpu']}.",
            f"- Versions: {stack}.",
            f"- Runs: {s['warmup_s']} s warm-up, then {s['repetitions']} interleaved rounds of {s['duration_s']} s "
            f"at saturation (median, min-max), then {s['duration_s']} s paced at {s['fixed_rate_share']:.0%} of the "
            "median; "
            f"{s['users']:,} users, a hot set of {s['hot_set']:,}, {s['tokens']} tokens; "
            f"{s['connections']} connections ({s['hashing_connections']} for login and create); "
            f"the database: {s.get('database', 'unknown')}. "
            f"Took {results['elapsed_s']:.0f} s.",
            *one_client(s.get("one_client_settings", {})),
            *experiment(s.get("service_settings", {})),
            *([steadiness.describe(results["host_speed"])] if results.get("host_speed") else []),
        ]
    )


def one_client(settings: dict[str, str]) -> list[str]:
    if not settings:
        return []
    named = ", ".join(f"`{name}={value}`" for name, value in sorted(settings.items()))
    return [f"- wrk is one client address, so the per-client limits are lifted: {named} (still counted)."]


def experiment(service_settings: dict[str, str]) -> list[str]:
    if not service_settings:
        return []
    named = ", ".join(f"`{name}={value}`" for name, value in sorted(service_settings.items()))
    return [f"- **Not the shipped defaults**: the service ran with {named}."]


def saturation_table(results: dict[str, Any]) -> str:
    head = ["endpoint", "server", "rps", "min-max", "p50 ms", "p99 ms", "p99.9 ms", "CPU us/req", "rps/core"]
    head += ["CPU %", "stolen %", "wrk CPU %", "RSS MB", "errors", "shed"]
    rows = [
        [
            endpoint,
            server,
            num(e.get("rps")),
            f"{num(e.get('rps_min'))}-{num(e.get('rps_max'))}",
            num(e.get("p50_ms"), 2),
            num(e.get("p99_ms"), 2),
            num(e.get("p999_ms"), 2),
            num(e.get("cpu_us_per_request")),
            num(e.get("capacity_rps")),
            num(e.get("cpu_pct")),
            num(e.get("stolen_pct")),
            num(e.get("client_cpu_pct")) + (f" {BOUND}" if e.get("load_generator_bound") else ""),
            num(e.get("rss_mb")),
            e["error"] if "error" in e else num(e.get("errors")),
            num(e.get("shed", 0)),
        ]
        for endpoint, server, e in entries(results)
    ]
    rounds = results["settings"]["repetitions"]
    intro = (
        f"The servers of an endpoint were measured in {rounds} interleaved rounds (service, baseline, ceiling, "
        "service, ...); each server's figures are the medians of its runs."
    )
    return f"## Saturation\n\n{intro}\n\n" + table(head, rows) + bound_note(results)


# Marks a figure wrk's own limit set.
BOUND = "(wrk-bound)"


def bound_note(results: dict[str, Any]) -> str:
    bound = [f"{endpoint} {server}" for endpoint, server, e in entries(results) if e.get("load_generator_bound")]
    if not bound:
        return ""
    pct = results["settings"].get("load_generator_bound_pct", 90)
    return (
        f"\n\n{BOUND}: {', '.join(bound)}. wrk used {pct:g}% or more of its core, so that rps is the load "
        "generator's limit, not the server's: the server would have answered more, and a ratio against it "
        "is at most the figure shown. rps/core, from the server's own CPU time, is much less affected."
    )


def ratios_table(results: dict[str, Any]) -> str:
    found = results.get("ratios")
    if not found:
        return ""
    head = ["endpoint", "service vs", "rps ratio", "each round", "ratio of medians", "rps/core ratio", "each round"]
    rows = [
        [
            endpoint,
            other.removeprefix("vs_") + (f" {BOUND}" if r["load_generator_bound"] else ""),
            num(r["median"], 3),
            " / ".join(num(value, 3) for value in r["runs"]),
            num(r["of_medians"], 3),
            num(r["by_cpu"], 3),
            " / ".join(num(value, 3) for value in r["by_cpu_runs"]),
        ]
        for endpoint, by_other in found.items()
        for other, r in by_other.items()
    ]
    return (
        "## Ratios between servers, round by round\n\n"
        "Each round's ratio is the service's run over the other server's run of the same round, seconds apart; "
        "the ratio reported (and checked by the targets) is the median of the rounds' ratios. The ratio of "
        "the per-server medians is shown for comparison.\n\n" + table(head, rows)
    )


def database_table(results: dict[str, Any]) -> str:
    rows = [
        [
            endpoint,
            server,
            num(e["db_cpu_us_per_request"]),
            num(e.get("db_cpu_pct")),
            num(e.get("client_cpu_pct")),
            num(e.get("cpu_us_per_request")),
        ]
        for endpoint, server, e in entries(results)
        if "db_cpu_us_per_request" in e
    ]
    if not rows:
        return ""
    head = ["endpoint", "server", "PostgreSQL CPU us/req", "PostgreSQL CPU %", "wrk CPU %", "server CPU us/req"]
    where = results["settings"].get("database", "unknown")
    shared = " PostgreSQL's CPU % and wrk's add up to their one core's load." if "pinned to CPU" in where else ""
    return (
        "## PostgreSQL's CPU (saturation runs)\n\n"
        "The postmaster and every process it forked (backends, WAL writer, checkpointer, autovacuum), from "
        "/proc before and after each measured run, over the requests answered; "
        f"the database: {where}.{shared}\n\n" + table(head, rows)
    )


def paced_table(results: dict[str, Any]) -> str:
    head = [
        "endpoint",
        "server",
        "target rps",
        "achieved",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "CPU us/req",
        "errors",
        "shed",
    ]
    rows = [
        [
            endpoint,
            server,
            num(e.get("fixed_rate_rps")),
            num(e.get("fixed_achieved_rps")),
            num(e.get("fixed_p50_ms"), 2),
            num(e.get("fixed_p99_ms"), 2),
            num(e.get("fixed_p999_ms"), 2),
            num(e.get("fixed_cpu_us_per_request")),
            num(e.get("fixed_errors")),
            num(e.get("fixed_shed", 0)),
        ]
        for endpoint, server, e in entries(results)
        if "fixed_rate_rps" in e
    ]
    share = results["settings"]["fixed_rate_share"]
    return f"## At {share:.0%} of saturation (fixed rate)\n\n" + table(head, rows)


def gc_table(results: dict[str, Any]) -> str:
    rows = []
    for endpoint, server, e in entries(results):
        for generation, pauses in e.get("gc", {}).items():
            counts = [num(pauses["collections"]), num(pauses["pause_ms"], 2), num(pauses["pause_us_per_request"], 3)]
            rows.append([endpoint, server, generation, *counts])
    if not rows:
        return ""
    head = ["endpoint", "server", "generation", "collections", "pause ms", "pause us/req"]
    return "## GC pauses of the service (its python_gc_pause_seconds, over the measured runs)\n\n" + table(head, rows)


def tracing_table(results: dict[str, Any]) -> str:
    tracing = results.get("tracing")
    if not tracing:
        return ""
    head = ["sampler arg", "endpoint", "rps", "min-max", "p99 ms", "CPU us/req", "rps/core", "stolen %"]
    head += ["rps vs off %", "rps/core vs off %", "exports"]
    rows = [
        [label, endpoint, *tracing_cells(e), num(run.get("exports"))]
        for label, run in [("off", tracing["off"]), *tracing["ratios"].items()]
        for endpoint, e in run.items()
        if isinstance(e, dict)
    ]
    return f"## Tracing overhead (service)\n\n{tracing['method']}\n\n" + table(head, rows)


def tracing_cells(e: dict[str, Any]) -> list[str]:
    return [
        num(e.get("rps")),
        f"{num(e.get('rps_min'))}-{num(e.get('rps_max'))}",
        num(e.get("p99_ms"), 2),
        num(e.get("cpu_us_per_request")),
        num(e.get("capacity_rps")),
        num(e.get("stolen_pct")),
        num(e.get("rps_change_pct"), 1),
        num(e.get("capacity_change_pct"), 1),
    ]


def allocation_table(results: dict[str, Any]) -> str:
    allocations = results.get("allocations")
    if not allocations:
        return ""
    rows = [
        [
            endpoint,
            num(allocations[endpoint]["peak_bytes_per_request"]),
            num(allocations[endpoint]["peak_bytes_max"]),
            num(allocations[endpoint]["net_bytes_per_request"], 1),
        ]
        for endpoint in ("verify", "user_hit", "verify_asgi", "user_hit_asgi")
        if endpoint in allocations
    ]
    head = ["endpoint", "peak B/request (median)", "peak B (max)", "net B/request"]
    return f"## Allocations on the hot path\n\n{allocations['method']}\n\n" + table(head, rows)


def targets_table(results: dict[str, Any]) -> str:
    head = ["target", "measured", "met", "margin", "by CPU time", "met by CPU time", "each round"]
    rows = [target_row(t) for t in results.get("targets", {}).values()]
    return (
        "## Targets\n\nmargin: how far past the goal, in the good direction (negative: missed by that much). "
        "by CPU time: the same figure from rps/core (1e6 / CPU us per request), which other load does not move. "
        "A ratio is the median of the rounds' ratios, each round's in the last column. "
        f"{BOUND}: wrk's own limit set a figure it reads (see the saturation table).\n\n" + table(head, rows)
    )


def target_row(t: dict[str, Any]) -> list[str]:
    digits = 0 if t["unit"] in ("rps", "B") else 2
    by_cpu = [num(t["by_cpu"], digits) + f" {t['unit']}", yes_no(t["met_by_cpu"])] if "by_cpu" in t else ["", ""]
    measured = num(t["measured"], digits) + f" {t['unit']}" + (f" {BOUND}" if t.get("load_generator_bound") else "")
    each = " / ".join(num(value, digits) for value in t.get("ratio_runs", []))
    return [t["description"], measured, yes_no(t["met"]), num(t["margin_pct"], 1) + " %", *by_cpu, each]


def mixed_breakdown(results: dict[str, Any]) -> str:
    b = results.get("mixed_breakdown")
    if not b:
        return ""
    return (
        "## The mixed scenario: where its CPU goes\n\n"
        f"Creates and logins are {b['hashing_share_of_requests_pct']:g}% of the mix's requests and "
        f"{b['hashing_share_of_cpu_pct']:.0f}% of its CPU: {b['cpu_ms_per_hashing_request']:.1f} ms each "
        "(one argon2id hash or verification at the service's parameters, plus the request), derived from "
        f"the mix ({b['cpu_us_per_request']:.0f} us a request) and the same mix less them, measured in the "
        f"same run ({b['cpu_us_per_request_without_hashing']:.0f} us a request). At "
        f"{targets.MIXED_GOAL_RPS:,} requests a second on one core, a request may cost "
        f"{b['budget_us_per_request_at_goal']:.0f} us; the hashing alone takes {b['hashing_us_per_request']:.0f} us "
        f"of every request's share. Were hashing free, one core would serve "
        f"{b['rps_per_core_if_hashing_were_free']:,.0f} requests a second of this mix."
    )


def latency_breakdown(results: dict[str, Any]) -> str:
    found = results.get("latency_breakdown")
    if not found:
        return ""
    head = ["endpoint", "paced rps", "p50 ms", "p99 ms", "server CPU %", "CPU us/req paced", "saturated"]
    head += ["requests a tick", "a tick answered in ms", "ceiling p99 ms"]
    rows = [
        [
            endpoint,
            num(b["paced_rps"]),
            num(b["p50_ms"], 2),
            num(b["p99_ms"], 2),
            num(b["server_cpu_pct"]),
            num(b["cpu_us_per_request_paced"]),
            num(b["cpu_us_per_request_saturated"]),
            num(b["requests_per_timer_tick"]),
            num(b["one_tick_answered_in_ms"], 2),
            num(b["ceiling_p99_ms"], 2),
        ]
        for endpoint, b in found.items()
    ]
    share = results["settings"]["fixed_rate_share"]
    return (
        "## The paced runs: what their p99 is made of\n\n"
        f"At {share:.0%} of the saturation rate the server is busier than {share:.0%}: a request costs more CPU "
        "when fewer share each wake-up of the loop (server CPU %, and CPU per request paced against saturated). "
        "wrk's timer ticks once a millisecond, so the requests due in a tick can leave together; answering "
        "them one after another takes 'a tick answered in', the wait of the last of them. The ceiling's p99 "
        "under the same pacer is what the load generator and the network stack alone add.\n\n" + table(head, rows)
    )


def yes_no(met: bool) -> str:
    return "yes" if met else "**no**"


def method(results: dict[str, Any]) -> str:
    return "## Method and limits\n\n" + "\n".join(f"- {note}" for note in results["method"])


def problems(results: dict[str, Any]) -> str:
    found = [f"- {problem}" for problem in results["problems"]] + [f"- {note}" for note in results.get("notes", [])]
    return "## Problems and notes of this run\n\n" + "\n".join(found) if found else ""

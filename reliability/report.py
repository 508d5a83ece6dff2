"""The results written out: latest.json with a dated copy, and latest.md (what was tried, what was observed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import num, table

# The figures the issue names, in the table's columns; the other figures are listed under it.
COLUMNS = {
    "sent": ("sent", 0),
    "failed": ("failed", 0),
    "lost_writes": ("lost writes", 0),
    "recovery_s": ("recovery s", 2),
    "accepted_attacks": ("accepted attacks", 0),
    "p99_ms": ("p99 ms", 1),
}
ENTRY_KEYS = {"status", "tried", "observed", "problems", "duration_s", "connections_before", "connections_after"}


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    """latest.json, YYYY-MM-DD-HHMM.json and latest.md in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    written = [directory / "latest.json", directory / f"{results['date_stamp']}.json"]
    for path in written:
        path.write_text(text)
    written.append(directory / "latest.md")
    written[-1].write_text(markdown(results))
    return written


def markdown(results: dict[str, Any]) -> str:
    sections = [header(results), scenario_table(results), figures(results), problems(results)]
    return "\n\n".join(section for section in sections if section) + "\n"


def header(results: dict[str, Any]) -> str:
    m, counts = results["machine"], results["summary"]
    stack = ", ".join(f"{name} {version}" for name, version in results["versions"].items())
    tally = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    return "\n".join(
        [
            f"# auth-service reliability, {results['date']}",
            "",
            f"- Machine: {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, {m['memory_gib']} GiB; "
            f"load average at start {m['load_average_at_start']}.",
            f"- Versions: {stack}.",
            f"- The `{results['profile']}` versions of the scenarios, 127.0.0.1 only; the database: "
            f"{results['database']}. Took {results['elapsed_s']:.0f} s: {tally}.",
        ]
    )


def cell(entry: dict[str, Any], key: str, digits: int) -> str:
    value = entry.get(key)
    return "-" if value is None else num(value, digits)


def connections(entry: dict[str, Any]) -> str:
    before, after = entry.get("connections_before"), entry.get("connections_after")
    return "-" if before is None and after is None else f"{num(before)} → {num(after)}"


def scenario_table(results: dict[str, Any]) -> str:
    head = ["scenario", "status", *(title for title, _ in COLUMNS.values()), "connections before → after"]
    head += ["tried", "observed"]
    rows = [
        [
            f"`{key}`",
            f"**{e['status']}**" if e["status"] != "passed" else e["status"],
            *(cell(e, name, digits) for name, (_, digits) in COLUMNS.items()),
            connections(e),
            e.get("tried", ""),
            e.get("observed", ""),
        ]
        for key, e in results["scenarios"].items()
    ]
    return "## Scenarios\n\n" + table(head, rows)


def scalar_figures(entry: dict[str, Any]) -> list[str]:
    skipped = ENTRY_KEYS | set(COLUMNS)
    return [
        f"{name} {format_value(value)}"
        for name, value in entry.items()
        if name not in skipped and value is not None and not isinstance(value, dict | list) and "\n" not in str(value)
    ]


def format_value(value: Any) -> str:
    return num(value, 2) if isinstance(value, float) else str(value)


def figures(results: dict[str, Any]) -> str:
    lines = [
        f"- `{key}`: " + "; ".join(found) for key, e in results["scenarios"].items() if (found := scalar_figures(e))
    ]
    return "## Other figures (every figure is in latest.json)\n\n" + "\n".join(lines) if lines else ""


def problems(results: dict[str, Any]) -> str:
    lines = [f"- `{key}`: {problem}" for key, e in results["scenarios"].items() for problem in e.get("problems", [])]
    return "## Broken promises\n\n" + "\n".join(lines) if lines else ""

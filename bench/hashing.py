"""`python -m bench.hashing`: argon2id's CPU per hash and per verification, libsodium (PyNaCl) against
argon2-cffi, at the service's parameters, through the service's own hasher class.

The two libraries are measured in alternating order within each round, so a round's ratio is taken in
one time window: this machine's speed moves by up to 2x between blocks of a run. The figure is the
median of the rounds' ratios. CPU time of the calling thread (both libraries drop the GIL and compute
in it), not wall time: a neighbour's load then adds less noise.

Writes bench/results/hashing-latest.json and a dated copy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from auth_service.security.passwords import Argon2id
from auth_service.settings import Settings
from bench.config import RESULTS_DIR
from bench.machine import cpu_model, memory_gib
from bench.ratios import per_round

BACKENDS = ("libsodium", "argon2-cffi")
OPERATIONS = ("hash", "verify")
PACKAGES = ("argon2-cffi", "argon2-cffi-bindings", "pynacl")


def one_round(hashers: dict[str, Argon2id], order: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{backend: {operation: CPU ms}}: each backend hashes a fresh password, then verifies it."""
    return {backend: timed_pair(hashers[backend]) for backend in order}


def timed_pair(hasher: Argon2id) -> dict[str, float]:
    password = secrets.token_urlsafe(24)
    started = time.thread_time_ns()
    stored = hasher.hash(password)
    hashed = time.thread_time_ns()
    assert hasher.verify(stored, password)
    return {"hash": (hashed - started) / 1e6, "verify": (time.thread_time_ns() - hashed) / 1e6}


def measure(rounds: int, time_cost: int, memory_kib: int) -> dict[str, Any]:
    hashers = {backend: Argon2id(backend, time_cost, memory_kib, 1) for backend in BACKENDS}
    one_round(hashers, BACKENDS)  # warm: first calls page in the libraries and their memory
    runs = [one_round(hashers, BACKENDS if index % 2 == 0 else BACKENDS[::-1]) for index in range(rounds)]
    figures: dict[str, Any] = {}
    for operation in OPERATIONS:
        for backend in BACKENDS:
            figures[f"{backend}_{operation}_ms"] = round(statistics.median(r[backend][operation] for r in runs), 2)
        ratios = per_round([r["libsodium"][operation] for r in runs], [r["argon2-cffi"][operation] for r in runs])
        figures[f"{operation}_ratio"] = round(statistics.median(ratios), 3)
        figures[f"{operation}_ratio_runs"] = [round(ratio, 3) for ratio in ratios]
    return figures


def report(rounds: int) -> dict[str, Any]:
    defaults = Settings.model_fields
    time_cost, memory_kib = defaults["argon2_time_cost"].default, defaults["argon2_memory_kib"].default
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": memory_gib(),
            "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        },
        "versions": {package: metadata.version(package) for package in PACKAGES},
        "parameters": {"m_kib": memory_kib, "t": time_cost, "p": 1},
        "rounds": rounds,
        "method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "figures": measure(rounds, time_cost, memory_kib),
    }


def write(results: dict[str, Any], output_dir: Path) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M")
    text = json.dumps(results, indent=2) + "\n"
    paths = [output_dir / "hashing-latest.json", output_dir / f"hashing-{stamp}.json"]
    for path in paths:
        path.write_text(text)
    return paths


def summary(results: dict[str, Any]) -> str:
    f, p = results["figures"], results["parameters"]
    by_operation = "; ".join(
        f"{op} {f[f'libsodium_{op}_ms']} ms (libsodium) vs {f[f'argon2-cffi_{op}_ms']} ms (argon2-cffi), "
        f"ratio {f[f'{op}_ratio']}"
        for op in OPERATIONS
    )
    return f"argon2id m={p['m_kib']} KiB t={p['t']} p=1, {results['rounds']} rounds: {by_operation}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hashing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    results = report(args.rounds)
    print(summary(results))
    for path in write(results, args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

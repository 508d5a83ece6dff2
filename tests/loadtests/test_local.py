"""`make load`'s plan of the machine, its test data's shape, and the seeding's bounds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import servers
from bench.ports import free_port
from loadtests import local, worker_rate
from loadtests.accounts import Accounts, Session, email_of, seed
from loadtests.endpoints import SHED
from loadtests.service_client import ServiceClient, ServiceError
from tests.loadtests.locust_runs import REPO_ROOT, clean_env


def test_the_service_started_here_gets_a_core_and_locust_a_worker_per_other_core() -> None:
    assert local.plan((0, 1), starting_service=True, workers=None) == local.Plan((0,), (1,), 1)
    assert local.plan((0, 1, 2, 3), starting_service=True, workers=None) == local.Plan((0,), (1, 2, 3), 3)
    # A service already running is wherever it is: nothing is pinned, one core is left to it.
    assert local.plan((0, 1, 2, 3), starting_service=False, workers=None) == local.Plan((), (), 3)
    assert local.plan((0,), starting_service=True, workers=None) == local.Plan((), (), 1)
    assert local.plan((0, 1), starting_service=True, workers=2).workers == 2


def test_the_service_started_here_lifts_the_per_client_limits_as_the_bench_does() -> None:
    assert local.ONE_CLIENT_SETTINGS == servers.ONE_CLIENT_SETTINGS
    env = local.service_env("http://127.0.0.1:8123")
    assert env["AUTH_PORT"] == "8123" and env["AUTH_HOST"] == "127.0.0.1"
    assert {name: env[name] for name in local.ONE_CLIENT_SETTINGS} == local.ONE_CLIENT_SETTINGS


def test_every_locust_port_is_on_loopback(tmp_path: Path) -> None:
    args, extra = local.parse(["--ui", "--web-port", "9999", "--target-rps", "50"])
    command = local.locust_command("http://127.0.0.1:8000", args, local.Plan((0,), (1,), 1), tmp_path, extra)
    assert command[:3] == ["taskset", "-c", "1"] and command[-2:] == ["--target-rps", "50"]
    for flag in ("--master-bind-host", "--web-host"):
        assert command[command.index(flag) + 1] == "127.0.0.1"
    assert command[command.index("--csv") + 1] == str(tmp_path / "locust")


def test_make_load_refuses_a_host_that_is_not_this_machine() -> None:
    env = clean_env(LOCUST_HOST="http://auth.example.com")
    completed = subprocess.run(
        [sys.executable, "-m", "loadtests.local"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 1 and "is not on this machine" in completed.stderr


def test_the_accounts_travel_to_the_workers_as_plain_data() -> None:
    accounts = Accounts(
        "http://127.0.0.1:8000",
        "ab12cd34",
        "pw",
        (("id-1", email_of("ab12cd34", 1)),),
        (Session("id-1", "e", "t", 1.5),),
    )
    assert Accounts.from_message(accounts.to_message()) == accounts
    assert email_of("ab12cd34", 42) == "loadtest-ab12cd34-000042@example.com"


def test_the_seeding_is_bounded_when_no_service_answers() -> None:
    client = ServiceClient(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(ServiceError, match="did not answer 200 within 1 s"):
        client.wait_ready(1.0)
    assert time.monotonic() - started < 5
    with pytest.raises(ServiceError, match="http:// or https://"):
        ServiceClient("127.0.0.1:8000")
    with pytest.raises(ValueError, match="1 to 10 sessions"):
        seed(client, 10, 11)


def test_the_worker_rate_is_its_requests_over_its_cpu_time_in_locusts_final_window(tmp_path: Path) -> None:
    stats = tmp_path / "run.json"
    entries = [
        {
            "method": "GET",
            "name": "/v1/auth/verify",
            "num_requests": 9000,
            "start_time": 100.0,
            "last_request_timestamp": 110.0,
        },
        {
            "method": SHED,
            "name": "GET /v1/me (503)",
            "num_requests": 1000,
            "start_time": 101.0,
            "last_request_timestamp": 109.0,
        },
    ]
    stats.write_text(json.dumps(entries))
    assert worker_rate.window(stats) == worker_rate.Window(10_000, 1000, 100.0, 110.0)
    samples = [worker_rate.Sample(wall, worker=wall / 2, service=0.0) for wall in (99.0, 100.2, 105.0, 109.9, 111.0)]
    assert worker_rate.at(samples, 100.0).wall == 100.2 and worker_rate.at(samples, 110.0).wall == 109.9

"""The servers `make bench` measures the service against, each run as a real process on a loopback port."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from bench.ports import free_port
from tests.utils.app import bearer, create_user, login, make_settings, new_user, serve

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
BASELINE_KID = "b1"
BASELINE_KEY = secrets.token_urlsafe(36)  # 48 characters
USER_KEYS = ["id", "email", "name", "created_at", "updated_at"]
CLAIM_KEYS = ["sub", "iss", "aud", "iat", "nbf", "exp", "jti"]


@contextmanager
def running(args: list[str], env: dict[str, str], ready: Callable[[int], bool], log: Path) -> Iterator[int]:
    """`python -m ARGS --host 127.0.0.1 --port P` until ready(P); its port. Always stopped afterwards."""
    port = free_port()
    command = [sys.executable, "-m", *args, "--host", "127.0.0.1", "--port", str(port)]
    with (
        log.open("wb") as output,
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=output) as process,
    ):
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not ready(port):
                if process.poll() is not None:
                    raise AssertionError(f"{args[0]} exited with {process.returncode}:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{args[0]} not ready within {START_TIMEOUT}s:\n{log.read_text()}")
                time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def answers_healthz(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


# --- The baseline: the same API, the straightforward FastAPI way


@pytest.fixture(scope="module")
def baseline(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTH_")}
    env.update(
        AUTH_DATABASE_URL=database_url,
        AUTH_ENVIRONMENT="test",
        AUTH_TOKEN_KEYS=json.dumps({BASELINE_KID: BASELINE_KEY}),
        AUTH_TOKEN_ACTIVE_KID=BASELINE_KID,
    )
    log = tmp_path_factory.mktemp("baseline") / "server.log"
    with running(["bench.baseline"], env, answers_healthz, log) as port:
        yield f"http://127.0.0.1:{port}"


async def test_baseline_serves_the_api_with_the_services_bodies(baseline: str) -> None:
    async with httpx.AsyncClient(base_url=baseline, timeout=10.0) as client:
        user = await create_user(client)
        assert [key for key in user if key != "password"] == USER_KEYS

        fetched = await client.get(f"/v1/users/{user['id']}")
        assert fetched.status_code == 200
        assert list(fetched.json()) == USER_KEYS
        assert fetched.json()["email"] == user["email"]

        token = await login(client, user["email"], user["password"])
        claims = await client.get("/v1/auth/verify", headers=bearer(token))
        assert claims.status_code == 200
        assert list(claims.json()) == CLAIM_KEYS
        assert claims.json()["sub"] == user["id"]

        me = await client.get("/v1/me", headers=bearer(token))
        assert me.status_code == 200
        assert me.json() == fetched.json()

        renamed = await client.patch(f"/v1/users/{user['id']}", json={"name": "Renamed"}, headers=bearer(token))
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "Renamed"
        assert renamed.json()["updated_at"] > renamed.json()["created_at"]
        assert (await client.get(f"/v1/users/{user['id']}")).json()["name"] == "Renamed"


async def test_baseline_refuses_what_the_service_refuses(baseline: str) -> None:
    async with httpx.AsyncClient(base_url=baseline, timeout=10.0) as client:
        user = await create_user(client)
        other = await create_user(client)
        token = await login(client, user["email"], user["password"])

        assert (await client.get(f"/v1/users/{uuid.uuid4()}")).status_code == 404
        forged = jwt.encode({"sub": user["id"]}, "another-key-" * 4, algorithm="HS256", headers={"kid": BASELINE_KID})
        for headers in ({}, bearer("not-a-token"), bearer(forged)):
            assert (await client.get("/v1/auth/verify", headers=headers)).status_code == 401
            assert (await client.get("/v1/me", headers=headers)).status_code == 401
        patched = await client.patch(f"/v1/users/{other['id']}", json={"name": "Mine"}, headers=bearer(token))
        assert patched.status_code == 403

        wrong_password = await client.post("/v1/auth/token", json={"email": user["email"], "password": "wrong-one!"})
        unknown_email = await client.post(
            "/v1/auth/token", json={"email": new_user()["email"], "password": "whatever1"}
        )
        assert wrong_password.status_code == unknown_email.status_code == 401
        assert wrong_password.json() == unknown_email.json()


def same_instants(body: dict[str, Any]) -> dict[str, Any]:
    """The user with its times as datetimes: pydantic writes UTC as `Z`, orjson as `+00:00`."""
    times = {key: datetime.fromisoformat(body[key]) for key in ("created_at", "updated_at")}
    return {**body, **times}


async def test_baseline_and_service_accept_each_others_tokens_and_agree_on_users(
    baseline: str, database_url: str
) -> None:
    settings = make_settings(database_url, token_keys={BASELINE_KID: BASELINE_KEY}, token_active_kid=BASELINE_KID)
    async with serve(settings) as service, httpx.AsyncClient(base_url=baseline, timeout=10.0) as client:
        user = await create_user(service.client)
        from_service = await login(service.client, user["email"], user["password"])
        from_baseline = await login(client, user["email"], user["password"])

        for verifier in (client, service.client):
            for token in (from_service, from_baseline):
                claims = await verifier.get("/v1/auth/verify", headers=bearer(token))
                assert claims.status_code == 200, (verifier.base_url, claims.text)
                assert claims.json()["sub"] == user["id"]
                assert claims.json() == jwt.decode(token, options={"verify_signature": False})

        on_service = (await service.client.get(f"/v1/users/{user['id']}")).json()
        on_baseline = (await client.get(f"/v1/users/{user['id']}")).json()
        assert list(on_service) == list(on_baseline) == USER_KEYS
        assert same_instants(on_service) == same_instants(on_baseline)


# --- The ceiling: prebuilt bytes from a uvloop protocol

USER_BODY = json.dumps(
    {"id": str(uuid.uuid4()), "email": "a@example.com", "name": "A", "created_at": "2026-01-01T00:00:00+00:00"},
    separators=(",", ":"),
)
ROUTES: list[dict[str, Any]] = [
    {"method": "GET", "prefix": "/v1/auth/verify", "status": 200, "body": '{"sub":"s","iss":"i"}'},
    {"method": "GET", "prefix": "/v1/users/", "status": 200, "body": USER_BODY},
    {"method": "GET", "prefix": "/v1/me", "status": 200, "body": USER_BODY},
    {"method": "POST", "prefix": "/v1/auth/token", "status": 200, "body": '{"access_token":"t","expires_in":900}'},
    {"method": "GET", "prefix": "/healthz", "status": 200, "body": '{"status":"ok"}'},
]


def expected(status_line: str, body: str) -> bytes:
    encoded = body.encode()
    head = f"HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\nContent-Length: {len(encoded)}\r\n\r\n"
    return head.encode() + encoded


NOT_FOUND = expected("404 Not Found", '{"error":{"code":"not_found","message":"not found","details":[]}}')


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("ceiling")
    responses = folder / "responses.json"
    responses.write_text(json.dumps({"routes": [{**route, "content_type": "application/json"} for route in ROUTES]}))
    args = ["bench.ceiling", "--responses", str(responses)]
    with running(args, dict(os.environ), accepts_connections, folder / "server.log") as port:
        yield port


@contextmanager
def connection(port: int) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        yield sock


def request(method: str, path: str, body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n{length}\r\n".encode() + body


def receive(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes, or whatever came before the server closed or stopped sending."""
    received = b""
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        if not chunk:
            break
        received += chunk
    return received


@pytest.mark.parametrize("route", ROUTES, ids=[route["prefix"] for route in ROUTES])
def test_ceiling_answers_each_prefix_with_its_bytes(ceiling: int, route: dict[str, Any]) -> None:
    answer = expected("200 OK", route["body"])
    with connection(ceiling) as sock:
        sock.sendall(request(route["method"], route["prefix"] + "/with/more?q=1", b"{}"))
        assert receive(sock, len(answer)) == answer


def test_ceiling_answers_pipelined_requests_in_order_and_keeps_the_connection(ceiling: int) -> None:
    token = expected("200 OK", ROUTES[3]["body"])
    user = expected("200 OK", USER_BODY)
    verify = expected("200 OK", ROUTES[0]["body"])
    with connection(ceiling) as sock:
        # A body that reads like a request: answered as one, a 404 would come out of place.
        body = b"GET /nowhere HTTP/1.1\r\n\r\n"
        sock.sendall(
            request("POST", "/v1/auth/token", body) + request("GET", "/v1/users/1") + request("GET", "/v1/auth/verify")
        )
        assert receive(sock, len(token) + len(user) + len(verify)) == token + user + verify
        for _ in range(200):
            sock.sendall(request("GET", "/v1/me"))
            assert receive(sock, len(user)) == user


def test_ceiling_waits_for_the_rest_of_a_request(ceiling: int) -> None:
    whole = request("POST", "/v1/auth/token", b'{"email":"a@example.com"}') + request("GET", "/healthz")
    answers = expected("200 OK", ROUTES[3]["body"]) + expected("200 OK", '{"status":"ok"}')
    with connection(ceiling) as sock:
        for cut in (10, 60, len(whole) - 30):
            sock.sendall(whole[:cut])
            time.sleep(0.05)
            sock.sendall(whole[cut:])
            assert receive(sock, len(answers)) == answers


def test_ceiling_answers_an_unknown_path_or_method_with_404(ceiling: int) -> None:
    with connection(ceiling) as sock:
        for method, path in (("GET", "/nowhere"), ("GET", "/v1/users"), ("DELETE", "/v1/users/1")):
            sock.sendall(request(method, path))
            assert receive(sock, len(NOT_FOUND)) == NOT_FOUND

"""The hot rename answers a PATCH exactly as FastAPI's update_user does, and hands over what it does not answer.

Each request is sent twice: to the canonical path of the user (the hot rename's) and to the same id in
capitals (not canonical: FastAPI's route, which reads it as the same UUID). The two answers must be
the same bytes, but for the Date header and, after a rename, the `updated_at` the write stamped; the
hot rename's own count (`answered`) shows which of them it took.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from auth_service.api.fast import HotPaths
from tests.utils.app import RunningApp, bearer, create_user, login, serve
from tests.utils.otlp_receiver import otlp_receiver

UPDATED_AT = re.compile(rb'"updated_at":"[^"]*"')
TRACE_IDS = re.compile(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
JSON = {"content-type": "application/json"}
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass
class Renamer:
    app: RunningApp
    user: dict[str, Any]
    token: str

    @property
    def hot(self) -> HotPaths:
        admission: Any = self.app.services.telemetry.admission
        hot: HotPaths = admission.app
        return hot

    async def both(self, body: bytes, headers: dict[str, str] | None, user_id: str | None = None) -> list[Answer]:
        """The answers to this PATCH through the hot rename and through FastAPI, in that order."""
        target = user_id or self.user["id"]
        # A header given here replaces the default; one given as "" leaves it out.
        given = {name.lower(): value for name, value in {**JSON, **bearer(self.token), **(headers or {})}.items()}
        sent = {name: value for name, value in given.items() if value}
        answers = []
        for path in (f"/v1/users/{target}", f"/v1/users/{target.upper()}"):
            response = await self.app.client.patch(path, content=body, headers=sent)
            answers.append(answer(response))
        return answers

    async def same(self, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[Answer, int]:
        """The one answer both paths give, and how many of the pair the hot rename took."""
        before = self.hot.rename.answered
        hot, framework = await self.both(body, headers, **kwargs)
        assert hot == framework
        return hot, self.hot.rename.answered - before


def answer(response: httpx.Response) -> Answer:
    # The Date, and each request's own trace ids, apart.
    headers = [(name.lower(), TRACE_IDS.sub(b"...", value)) for name, value in response.headers.raw]
    headers = [(name, value) for name, value in headers if name != b"date"]
    return response.status_code, headers, UPDATED_AT.sub(b'"updated_at":"..."', response.content)


@pytest.fixture
async def renamer(settings_for: Any) -> AsyncIterator[Renamer]:
    async with serve(settings_for()) as app:
        user = await create_user(app.client)
        yield Renamer(app, user, await login(app.client, user["email"], user["password"]))


async def test_a_rename_is_the_same_answer_through_the_hot_path_and_fastapi(renamer: Renamer) -> None:
    (status, headers, body), answered = await renamer.same(b'{"name": "  Ada Lovelace "}')
    assert (status, answered) == (200, 1)
    assert (b"content-type", b"application/json") in headers
    assert b'"name":"Ada Lovelace"' in body  # trimmed by UserUpdate's Name, as FastAPI's validation trims it
    read = await renamer.app.client.get(f"/v1/users/{renamer.user['id']}")
    assert read.json()["name"] == "Ada Lovelace"  # this replica's cached copy was dropped


@pytest.mark.parametrize("authorization", ["", "Bearer not.a.token", "Basic abc"], ids=["none", "invalid", "basic"])
async def test_a_rename_without_a_valid_token_is_the_same_401(renamer: Renamer, authorization: str) -> None:
    (status, headers, _), answered = await renamer.same(b'{"name": "x"}', {"authorization": authorization})
    assert (status, answered) == (401, 1)
    assert (b"www-authenticate", b'Bearer error="invalid_token"') in headers


async def test_a_rename_of_another_user_is_the_same_403(renamer: Renamer) -> None:
    other = await create_user(renamer.app.client)
    (status, _, body), answered = await renamer.same(b'{"name": "x"}', user_id=other["id"])
    assert (status, answered) == (403, 1)
    assert b'"code":"forbidden"' in body


async def test_a_rename_of_a_user_that_is_not_there_is_the_same_404(renamer: Renamer) -> None:
    missing = str(uuid.uuid4())
    renamer.token = renamer.app.services.tokens.issue(missing)  # a valid token of a subject with no row
    (status, _, body), answered = await renamer.same(b'{"name": "x"}', user_id=missing)
    assert (status, answered) == (404, 1)
    assert b'"code":"not_found"' in body


async def test_a_deleted_users_token_is_the_same_401(renamer: Renamer) -> None:
    app, user = renamer.app, renamer.user
    body = {"current_password": user["password"]}
    deleted = await app.client.request("DELETE", f"/v1/users/{user['id']}", json=body, headers=bearer(renamer.token))
    assert deleted.status_code == 204
    (status, _, _), answered = await renamer.same(b'{"name": "x"}')
    assert (status, answered) == (401, 1)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "string_too_short"),
        ("   ", "string_too_short"),
        ("x" * 201, "string_too_long"),
        ("a\nb", "control_character"),
        ("\u009b1m", "control_character"),
        ("ab\u202ecd", "bidi_control"),
        ("a\u200fb", "bidi_control"),
        ("\u200b\u200d", "invisible_name"),
        ("\u3164", "invisible_name"),
        (None, "null_not_allowed"),
        (5, "string_type"),
    ],
)
async def test_every_name_rule_is_fastapis_422(renamer: Renamer, name: Any, code: str) -> None:
    (status, _, body), answered = await renamer.same(orjson.dumps({"name": name}))
    assert (status, answered) == (422, 0)
    assert f'"code":"{code}"'.encode() in body


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{}", {}, 422),  # no_changes
        (b'{"name": "x", "nickname": "y"}', {}, 422),  # extra_forbidden
        (b'{"name": "x"', {}, 400),  # malformed_json
        (b'"x"', {}, 422),
        (b'{"name": "x"}', {"content-type": "text/plain"}, 415),
        (b'{"name": "x"}', {"content-type": "application/merge-patch+json"}, 200),  # JSON to FastAPI too
        (b'{"name": "x", "current_password": "wrong-password-here"}', {}, 403),  # checked even for a rename
        (b'{"email": "someone-else@example.com"}', {}, 403),  # reauthentication_required
    ],
)
async def test_other_patches_go_on_to_fastapi(
    renamer: Renamer, content: bytes, headers: dict[str, str], status: int
) -> None:
    (given, _, _), answered = await renamer.same(content, headers)
    assert (given, answered) == (status, 0)


async def test_an_email_taken_is_fastapis_409(renamer: Renamer) -> None:
    other = await create_user(renamer.app.client)
    body = {"email": other["email"], "current_password": renamer.user["password"]}
    (status, _, response), answered = await renamer.same(httpx.Request("PATCH", "/", json=body).read())
    assert (status, answered) == (409, 0)
    assert b'"code":"email_taken"' in response


async def test_a_body_past_the_limit_is_the_same_413(renamer: Renamer) -> None:
    limit = renamer.app.services.settings.max_body_bytes
    content = b'{"name": "x"' + b" " * limit + b"}"
    (status, _, _), answered = await renamer.same(content)
    assert (status, answered) == (413, 0)


async def test_hot_renames_are_counted_in_the_latency_histogram_by_route(renamer: Renamer) -> None:
    app = renamer.app
    for index in range(3):
        response = await app.client.patch(
            f"/v1/users/{renamer.user['id']}", json={"name": f"n{index}"}, headers=bearer(renamer.token)
        )
        assert response.status_code == 200
    async with httpx.AsyncClient() as admin:
        text = (await admin.get(f"http://127.0.0.1:{app.services.telemetry.admin_port}/metrics")).text
    count = re.search(
        r'http_server_request_duration_seconds_count\{method="PATCH",route="/v1/users/\{user_id\}",'
        r'status_class="2xx"\} (\S+)',
        text,
    )
    assert count is not None and float(count.group(1)) == 3.0
    assert renamer.hot.rename.answered == 3


async def test_a_traced_hot_rename_has_the_server_span_fastapis_rename_has(settings_for: Any) -> None:
    """The span, its name and attributes (load-test marking too) and its children: the middleware's, on both paths."""
    async with otlp_receiver() as receiver:
        settings = settings_for(
            otel_traces_exporter="otlp",
            otel_exporter_otlp_endpoint=receiver.endpoint,
            otel_traces_sampler="parentbased_traceidratio",
            otel_traces_sampler_arg=1.0,
            otel_bsp_schedule_delay_ms=50,
        )
        async with serve(settings) as app:
            user = await create_user(app.client)
            renamer = Renamer(app, user, await login(app.client, user["email"], user["password"]))
            hot, framework = await renamer.both(b'{"name": "Traced"}', {"x-load-test": "1"})
            assert hot == framework and hot[0] == 200
            assert any(name == b"traceresponse" for name, _ in hot[1])
            assert renamer.hot.rename.answered == 1
            spans = await receiver.wait_for_spans(
                lambda spans: sum(span.name == "PATCH /v1/users/{user_id}" for span in spans) == 2, 10
            )
    servers = [span for span in spans if span.name == "PATCH /v1/users/{user_id}"]
    shapes = [
        (
            span.kind,
            span.attributes["http.route"],
            span.attributes["http.response.status_code"],
            span.attributes.get("load_test"),
            sorted(child.name for child in receiver.children_of(span)),
        )
        for span in servers
    ]
    assert shapes[0] == shapes[1]
    kind, route, status, load_test, _ = shapes[0]
    assert (kind, route, status, load_test) == ("SERVER", "/v1/users/{user_id}", 200, True)

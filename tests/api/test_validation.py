"""What the service accepts: emails normalised alike at signup and login, displayable names, JSON bodies only."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import httpx
import pytest

from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, new_user, unique_email
from tests.utils.postgres import stored_emails
from tests.utils.sql import sql_connection


def local_part() -> str:
    return unique_email("zoe").split("@")[0]


# --- Login normalises the email as signup does (email-validator, through pydantic's EmailStr)

# Spellings of one address that signup turns into the same stored email: (signed up with, logged in with).
SPELLINGS = {
    # "Zoë" typed as "o" + U+0308 COMBINING DIAERESIS (NFD, as macOS file names and some keyboards give it).
    "nfd": lambda local: (unicodedata.normalize("NFD", f"{local}-zoë@example.com"), None),
    "nfd-then-nfc": lambda local: (
        unicodedata.normalize("NFD", f"{local}-zoë@example.com"),
        unicodedata.normalize("NFC", f"{local}-zoë@example.com"),
    ),
    "idn-punycode": lambda local: (f"{local}@xn--bcher-kva.example", None),
    "idn-unicode-then-punycode": lambda local: (f"{local}@bücher.example", f"{local}@xn--bcher-kva.example"),
    # "example" in fullwidth letters, which IDNA maps to ASCII.
    "idn-fullwidth": lambda local: (f"{local}@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", f"{local}@example.com"),
    "whitespace": lambda local: (f"  {local}@example.com \t", None),
    "whitespace-at-login": lambda local: (f"{local}@example.com", f"\t {local}@example.com\u00a0 "),
    "uppercase": lambda local: (f"{local.upper()}@EXAMPLE.COM", f"{local}@example.com"),
    "everything": lambda local: (
        unicodedata.normalize("NFD", f"  {local.upper()}-ZOË@Bücher.Example "),
        f"{local}-zoë@xn--bcher-kva.example",
    ),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
async def test_login_accepts_the_email_as_it_was_signed_up_with(client: httpx.AsyncClient, spelling: str) -> None:
    signed_up_with, logged_in_with = SPELLINGS[spelling](local_part())
    user = await create_user(client, email=signed_up_with)
    for email in (signed_up_with, logged_in_with or signed_up_with, user["email"]):
        response = await client.post("/v1/auth/token", json={"email": email, "password": user["password"]})
        assert response.status_code == 200, (email, response.text)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
async def test_a_normalised_email_still_needs_the_right_password(client: httpx.AsyncClient, spelling: str) -> None:
    signed_up_with, _ = SPELLINGS[spelling](local_part())
    await create_user(client, email=signed_up_with)
    response = await client.post("/v1/auth/token", json={"email": signed_up_with, "password": "not-the-password"})
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b", "@example.com", " ", "user@-bad-.example", "user@exa mple.com", "x" * 320]
)
async def test_a_login_email_that_does_not_parse_is_401_like_an_unknown_one(
    client: httpx.AsyncClient, email: str
) -> None:
    unknown = await client.post("/v1/auth/token", json={"email": unique_email(), "password": "some-password"})
    response = await client.post("/v1/auth/token", json={"email": email, "password": "some-password"})
    assert (response.status_code, response.content) == (401, unknown.content)


async def test_an_email_changed_by_patch_is_normalised_for_login(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    token = await login(client, user["email"], user["password"])
    email = unicodedata.normalize("NFD", f" {local_part()}-ÉLODIE@Bücher.example ")
    body = {"email": email, "current_password": user["password"]}
    response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == unicodedata.normalize("NFC", email.strip()).replace("Bücher", "bücher")
    assert (await client.post("/v1/auth/token", json={"email": email, "password": user["password"]})).status_code == 200


# --- Names must be displayable

REFUSED_NAMES = {
    # C1 controls: NEL is a line break to many renderers; CSI starts terminal escape sequences.
    "c1-nel": ("Ada\u0085Lovelace", "control_character"),
    "c1-csi": ("Ada\u009b31mLovelace", "control_character"),
    "c0-tab": ("Ada\tLovelace", "control_character"),
    "c0-trailing-newline": ("Ada Lovelace\n", "control_character"),
    "line-separator": ("Ada\u2028Lovelace", "control_character"),
    "paragraph-separator": ("Ada\u2029Lovelace", "control_character"),
    # Bidirectional controls (Unicode Bidi_Control): they reorder what is displayed around them.
    "rlo": ("Ada \u202eecalevoL", "bidi_control"),
    "lre": ("\u202aAda", "bidi_control"),
    "pdf": ("Ada\u202c", "bidi_control"),
    "rli": ("Ada \u2067x\u2069", "bidi_control"),
    "fsi": ("\u2068Ada", "bidi_control"),
    "rlm": ("Ada\u200f", "bidi_control"),
    "lrm": ("\u200eAda", "bidi_control"),
    "alm": ("Ada\u061c", "bidi_control"),
    # Nothing to see: format characters, combining marks alone, blank letters.
    "zero-width-space": ("\u200b", "invisible_name"),
    "zero-width-joiners": ("\u200c\u200d\u2060", "invisible_name"),
    "bom": ("\ufeff", "invisible_name"),
    "soft-hyphen": ("\u00ad\u00ad", "invisible_name"),
    "combining-marks": ("\u0301\u0308", "invisible_name"),
    "spaces-and-marks": (" \u0301 \u200b ", "invisible_name"),
    "hangul-filler": ("\u3164", "invisible_name"),
    "halfwidth-hangul-filler": ("\uffa0\uffa0", "invisible_name"),
    "braille-blank": ("\u2800", "invisible_name"),
    "tags": ("\U000e0041\U000e0064\U000e0061", "invisible_name"),
    "variation-selector": ("\ufe0f", "invisible_name"),
}
ACCEPTED_NAMES = [
    "Zoë Saldaña",
    "Zoe\u0308",  # a combining mark on a letter
    "محمد بن موسى",  # right-to-left without any bidi control
    "דוד בן-גוריון",
    "李小龍",
    "Ngũgĩ wa Thiong'o",
    "👩\u200d💻 Ada",  # a zero-width joiner inside an emoji sequence
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # a zero-width non-joiner, needed in Persian
    "  Ada Lovelace  ",  # surrounding spaces are trimmed
]


class NameTarget:
    """An endpoint that stores a name: signup, the batch, or a rename of one user."""

    def __init__(self, app: RunningApp, database_url: str, kind: str) -> None:
        self.app, self.database_url, self.kind = app, database_url, kind
        self.renamed: tuple[dict[str, Any], str] | None = None

    async def send(self, name: str) -> tuple[httpx.Response, str]:
        """The answer to storing this name, and the email of the user it was for."""
        client = self.app.client
        if self.kind == "rename":
            if self.renamed is None:
                user = await create_user(client)
                self.renamed = user, await login(client, user["email"], user["password"])
            user, token = self.renamed
            response = await client.patch(f"/v1/users/{user['id']}", json={"name": name}, headers=bearer(token))
            return response, user["email"]
        user = new_user(email=unique_email("name"), name=name)
        if self.kind == "create":
            return await client.post("/v1/users", json=user), user["email"]
        return await client.post("/v1/users:batch", json={"users": [user]}), user["email"]

    async def stored_name(self, email: str) -> str | None:
        async with sql_connection(self.database_url) as conn:
            name: str | None = await conn.fetchval("SELECT name FROM users WHERE lower(email) = lower($1)", email)
        return name


@pytest.fixture(params=["create", "batch", "rename"])
def name_target(request: Any, app: RunningApp, database_url: str) -> NameTarget:
    return NameTarget(app, database_url, request.param)


async def test_a_name_that_cannot_be_displayed_safely_is_422_naming_it(name_target: NameTarget) -> None:
    for case, (name, code) in REFUSED_NAMES.items():
        response, email = await name_target.send(name)
        error = assert_error(response, 422, "validation_error")
        expected = {"field": "name", "code": code} | ({"index": 0} if name_target.kind == "batch" else {})
        assert [{key: detail.get(key) for key in expected} for detail in error["details"]] == [expected], case
        stored = await name_target.stored_name(email)
        assert stored == (None if name_target.kind != "rename" else "Test User"), case


async def test_names_in_every_script_are_accepted(name_target: NameTarget) -> None:
    for name in ACCEPTED_NAMES:
        response, email = await name_target.send(name)
        assert response.status_code in (200, 201), (name, response.text)
        assert await name_target.stored_name(email) == name.strip()


# --- 415: the JSON endpoints take JSON bodies only


class BodyRoute:
    """An endpoint that reads a JSON body, with a body that it would accept."""

    def __init__(self, app: RunningApp, database_url: str, kind: str, user: dict[str, Any], token: str) -> None:
        self.app, self.database_url, self.kind, self.user = app, database_url, kind, user
        self.email = unique_email("media")
        item = {"email": self.email, "name": "Media Type", "password": "a-long-enough-password"}
        self.method, self.path, self.body = {
            "create": ("POST", "/v1/users", item),
            "batch": ("POST", "/v1/users:batch", {"users": [item]}),
            "token": ("POST", "/v1/auth/token", {"email": user["email"], "password": user["password"]}),
            "patch": (
                "PATCH",
                f"/v1/users/{user['id']}",
                {"email": self.email, "current_password": user["password"]},
            ),
            "delete": ("DELETE", f"/v1/users/{user['id']}", {"current_password": user["password"]}),
        }[kind]
        self.token = token

    async def send(self, content_type: str | None, content: bytes | None = None) -> httpx.Response:
        headers = bearer(self.token)
        if content_type is not None:
            headers["Content-Type"] = content_type
        content = json.dumps(self.body).encode() if content is None else content
        return await self.app.client.request(self.method, self.path, content=content, headers=headers)

    async def assert_nothing_written(self) -> None:
        assert await stored_emails(self.database_url, [self.email]) == set()
        response = await self.app.client.get(f"/v1/users/{self.user['id']}")
        assert response.status_code == 200, "the user is still there"
        assert response.json()["email"] == self.user["email"]


BODY_ROUTES = ["create", "batch", "token", "patch", "delete"]


@pytest.fixture(params=BODY_ROUTES)
async def body_route(request: Any, app: RunningApp, database_url: str) -> BodyRoute:
    user = await create_user(app.client)
    return BodyRoute(app, database_url, request.param, user, await login(app.client, user["email"], user["password"]))


NOT_JSON = [
    None,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/json-seq",
    "application/jsonx",
    "text/json",
    "json",
    "",
]


async def test_a_body_that_is_not_said_to_be_json_is_415(body_route: BodyRoute) -> None:
    for content_type in NOT_JSON:
        assert_error(await body_route.send(content_type), 415, "unsupported_media_type")
        await body_route.assert_nothing_written()


async def test_a_form_body_is_415_even_when_it_would_parse(body_route: BodyRoute) -> None:
    response = await body_route.send("application/x-www-form-urlencoded", b"email=a%40example.com&password=x")
    assert_error(response, 415, "unsupported_media_type")
    await body_route.assert_nothing_written()


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"],
)
async def test_json_media_types_are_accepted(body_route: BodyRoute, content_type: str) -> None:
    response = await body_route.send(content_type)
    assert response.status_code in (200, 201, 204), response.text


async def test_every_operation_with_a_body_answers_415(app: RunningApp) -> None:
    """Whatever routes exist: the rule is the application's, not each route's."""
    schema = (await app.client.get("/openapi.json")).json()
    with_body = [
        (method, path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert len(with_body) == len(BODY_ROUTES)
    user = await create_user(app.client)
    headers = {**bearer(await login(app.client, user["email"], user["password"])), "Content-Type": "text/plain"}
    for method, path in with_body:
        url = path.replace("{user_id}", user["id"])
        response = await app.client.request(method.upper(), url, content=b"{}", headers=headers)
        assert_error(response, 415, "unsupported_media_type")

"""The shapes of users on the wire: request models (validated) and the response encoding (orjson)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from auth_service.users.names import NAME_PATTERN, refuse_hidden_controls, require_visible

# A pre-hashed password for bulk imports: argon2id only, in PHC string form.
ARGON2ID_PHC = re.compile(r"^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
EMAIL_MAX = 320
NAME_MAX = 200
# The most any password may be (settings.password_max_length is at most this): a bound on the work
# done before the settings' bounds are checked.
PASSWORD_CAP = 4096
PASSWORD_BOUNDS_MARK = "x-password-bounds"
VISIBLE_NAME_MARK = "x-visible-name"

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX),
    BeforeValidator(refuse_hidden_controls),
    AfterValidator(require_visible),
    Field(
        description=f"1 to {NAME_MAX} characters once trimmed, something visible among them; "
        "no control, line-breaking or bidirectional control characters",
        # api/openapi.py completes the pattern with "something visible" (users/names.py).
        json_schema_extra={"pattern": NAME_PATTERN, VISIBLE_NAME_MARK: True},
    ),
]
# email-validator refuses the special-use domains (RFC 6761: test, invalid, localhost...), which
# `format: email` allows: the schema says so, case-insensitively, with a pattern of its own.
SPECIAL_USE_DOMAINS = "|".join(
    "".join(f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in name) for name in SPECIAL_USE_DOMAIN_NAMES
)
EMAIL_PATTERN = rf"^(?!.*@(?:.+\.)?(?:{SPECIAL_USE_DOMAINS})\.?$)"
Email = Annotated[
    EmailStr,
    Field(
        max_length=EMAIL_MAX,
        description="An address that can receive mail: not at a special-use domain",
        json_schema_extra={"pattern": EMAIL_PATTERN},
    ),
]
# A password being set: its bounds are the settings' (configurable, checked in the route), which
# api/openapi.py writes into the schema in place of the mark.
NewPassword = Annotated[
    str, Field(min_length=1, max_length=PASSWORD_CAP, json_schema_extra={PASSWORD_BOUNDS_MARK: True})
]
# A password a user has: checked against the stored hash, whatever the bounds were when it was set.
CurrentPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_CAP)]
# Its m, t and p must also be within the import range (argon2_import_*), its salt and hash long
# enough: checked per item in the route, and written into the schema's pattern by api/openapi.py.
IMPORT_RANGE_MARK = "x-argon2-import-range"
PasswordHash = Annotated[
    str,
    Field(
        pattern=ARGON2ID_PHC.pattern,
        max_length=512,
        description="An argon2id PHC string whose m, t and p are within the service's import range",
        json_schema_extra={IMPORT_RANGE_MARK: True},
    ),
]


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "leave the field out instead of sending null")
    return value


def _not_nullable(schema: dict[str, Any]) -> None:
    """The field's JSON schema without the null that its Python type holds for "left out"."""
    (given,) = [branch for branch in schema.pop("anyOf") if branch.get("type") != "null"]
    schema.update(given)
    schema.pop("default", None)


T = TypeVar("T")
# A field that may be left out, but not sent as null: left out is None here (no change, or the other
# choice), and null would say nothing more. The schema says so: not nullable, no default.
Omittable = Annotated[T | None, BeforeValidator(_refuse_null), Field(json_schema_extra=_not_nullable)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(StrictModel):
    email: Email
    name: Name
    password: NewPassword


class UserUpdate(StrictModel):
    """The fields given change; a change of email or password also needs `current_password`."""

    # At least one change (a body of current_password alone is a 422 no_changes).
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["email"]}, {"required": ["name"]}, {"required": ["password"]}]}
    )

    email: Omittable[Email] = None
    name: Omittable[Name] = None
    password: Omittable[NewPassword] = None
    current_password: Omittable[CurrentPassword] = None


class Reauthentication(StrictModel):
    """The proof a destructive change needs beyond the token: the user's current password."""

    # Optional here so that its absence gets the actionable 403 reauthentication_required, not a 422.
    current_password: Omittable[CurrentPassword] = None


class UserImport(StrictModel):
    """One item of a batch: a plain password (hashed here) or an argon2id hash (imported as is)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["password"]}, {"required": ["password_hash"]}]}
    )

    email: Email
    name: Name
    password: Omittable[NewPassword] = None
    password_hash: Omittable[PasswordHash] = None


class UserBatch(StrictModel):
    # Items are unique by email (a 422 duplicate_in_batch names the pair); uniqueItems says the part
    # of it JSON Schema can say.
    users: list[UserImport] = Field(min_length=1, json_schema_extra={"uniqueItems": True})


class UserOut(BaseModel):
    """A user as every endpoint returns it; the password hash never leaves the service."""

    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


class UserBatchOut(BaseModel):
    users: list[UserOut]


_SIGNUP_EMAIL: TypeAdapter[str] = TypeAdapter(Email)


def login_email(value: str) -> str:
    """The email as signup stores it (parsed by the same type: NFC, IDNA, trimmed), or as given if it is no email.

    Login finds the user by the string they signed up with; a malformed email then fails as an
    unknown one does (401), rather than with a 422 that would tell it apart.
    """
    try:
        return _SIGNUP_EMAIL.validate_python(value)
    except ValidationError:
        return value


def user_dict(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),  # asyncpg's own UUID type, which orjson does not know
        "email": row["email"],
        "name": row["name"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def encode_user(row: Any) -> bytes:
    """The response bytes of one user, as cached: encoded once, served many times."""
    return orjson.dumps(user_dict(row))

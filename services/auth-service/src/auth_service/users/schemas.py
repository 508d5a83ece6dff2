"""The shapes of users on the wire: request models (validated) and the response encoding (orjson)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

# NUL cannot be stored in PostgreSQL text, and control characters in names and emails are
# always a mistake or an attack on whoever displays them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A pre-hashed password for bulk imports: argon2id only, in PHC string form.
ARGON2ID_PHC = re.compile(r"^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
EMAIL_MAX = 320
NAME_MAX = 200


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX),
    AfterValidator(_no_control_characters),
]
Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX)]
# Bounds are checked against settings in the route (they are configurable); this only caps the size.
Password = Annotated[str, Field(min_length=1, max_length=4096)]
PasswordHash = Annotated[str, Field(pattern=ARGON2ID_PHC.pattern, max_length=512)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(StrictModel):
    email: Email
    name: Name
    password: Password


class UserUpdate(StrictModel):
    email: Email | None = None
    name: Name | None = None
    password: Password | None = None


class UserImport(StrictModel):
    """One item of a batch: a plain password (hashed here) or an argon2id hash (imported as is)."""

    email: Email
    name: Name
    password: Password | None = None
    password_hash: PasswordHash | None = None


class UserBatch(StrictModel):
    users: list[UserImport] = Field(min_length=1)


class UserOut(BaseModel):
    """A user as every endpoint returns it; the password hash never leaves the service."""

    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


class UserBatchOut(BaseModel):
    users: list[UserOut]


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

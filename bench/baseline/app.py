"""The service's API written the way a FastAPI tutorial or template writes it: the "before" picture.

Everything a typical project does, and nothing more: pydantic `response_model`s serialised by
FastAPI's default JSON response, `Depends` for the session and the current user, the SQLAlchemy 2
ORM with an `AsyncSession` per request, PyJWT on every request through `HTTPBearer`, and argon2 in
Starlette's thread pool. No cache, no prepared statements of our own, no pre-encoded bytes.

It reads the service's settings (AUTH_* variables), uses the same `users` table (created by the
service's migrations) and issues and accepts the same tokens, so one load script drives both.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import DateTime, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from auth_service.settings import Settings

# --- Models: the service's `users` table, mapped (its Alembic migrations create it)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str]
    name: Mapped[str]
    password_hash: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


# --- Schemas


class UserCreate(BaseModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=1024)


class UserUpdate(BaseModel):
    email: EmailStr | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    password: str | None = Field(None, min_length=8, max_length=1024)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


class Credentials(BaseModel):
    email: str
    password: str


class Token(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class Claims(BaseModel):
    sub: str
    iss: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str


class Health(BaseModel):
    status: str


# --- Security: tokens (PyJWT) and passwords (argon2-cffi), from the service's settings


def create_access_token(settings: Settings, subject: str) -> str:
    now = int(time.time())
    claims = {
        "sub": subject,
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "iat": now,
        "nbf": now,
        "exp": now + settings.token_ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    key = settings.token_keys[settings.token_active_kid].get_secret_value()
    headers = {"kid": settings.token_active_kid}
    return jwt.encode(claims, key, algorithm=settings.token_algorithm, headers=headers)


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """The token's claims; raises jwt.PyJWTError when it is not valid."""
    kid = jwt.get_unverified_header(token).get("kid")
    if kid not in settings.token_keys:
        raise jwt.InvalidTokenError("unknown kid")
    return jwt.decode(
        token,
        settings.token_keys[kid].get_secret_value(),
        algorithms=[settings.token_algorithm],
        audience=settings.token_audience,
        issuer=settings.token_issuer,
        leeway=settings.token_leeway_seconds,
        options={"require": ["exp", "nbf", "iat", "aud", "iss", "sub"]},
    )


def make_password_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def verify_password(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- Dependencies (`async def` as in FastAPI's security tutorial: a plain `def` one runs in the thread pool)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.hasher
    return hasher


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
HasherDep = Annotated[PasswordHasher, Depends(get_hasher)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
BearerDep = Annotated[HTTPAuthorizationCredentials, Depends(HTTPBearer())]

CREDENTIALS_EXCEPTION = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="Could not validate credentials",
    headers={"WWW-Authenticate": "Bearer"},
)


async def get_token_claims(credentials: BearerDep, settings: SettingsDep) -> dict[str, Any]:
    try:
        return decode_access_token(settings, credentials.credentials)
    except jwt.PyJWTError:
        raise CREDENTIALS_EXCEPTION from None


TokenClaims = Annotated[dict[str, Any], Depends(get_token_claims)]


async def get_current_user(session: SessionDep, claims: TokenClaims) -> User:
    try:
        user_id = uuid.UUID(claims["sub"])
    except ValueError:
        raise CREDENTIALS_EXCEPTION from None
    user = await session.get(User, user_id)
    if user is None:
        raise CREDENTIALS_EXCEPTION
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


# --- Routes

router = APIRouter(prefix="/v1")


@router.post("/auth/token", response_model=Token)
async def login(
    body: Credentials, request: Request, session: SessionDep, settings: SettingsDep, hasher: HasherDep
) -> Any:
    """Exchange an email and password for an access token."""
    user = await session.scalar(select(User).where(func.lower(User.email) == body.email.lower()))
    if user is None:
        # Verify anyway, so that an unknown email takes as long as a wrong password.
        await run_in_threadpool(verify_password, hasher, request.app.state.dummy_hash, body.password)
        raise HTTPException(status_code=401, detail="Incorrect email or password")
    if not await run_in_threadpool(verify_password, hasher, user.password_hash, body.password):
        raise HTTPException(status_code=401, detail="Incorrect email or password")
    token = create_access_token(settings, str(user.id))
    return Token(access_token=token, expires_in=settings.token_ttl_seconds)


@router.get("/auth/verify", response_model=Claims)
async def verify(claims: TokenClaims) -> Any:
    """The claims of a valid bearer token, or 401."""
    return claims


@router.get("/me", response_model=UserOut)
async def read_me(current_user: CurrentUser) -> Any:
    """The user a bearer token belongs to."""
    return current_user


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, session: SessionDep, hasher: HasherDep) -> Any:
    """Create a user."""
    password_hash = await run_in_threadpool(hasher.hash, body.password)
    user = User(email=body.email, name=body.name, password_hash=password_hash)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        raise HTTPException(status_code=409, detail="A user with this email already exists") from None
    await session.refresh(user)
    return user


@router.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: uuid.UUID, session: SessionDep) -> Any:
    """A user by id."""
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, session: SessionDep, current_user: CurrentUser, hasher: HasherDep
) -> Any:
    """Change a user's name, email or password; needs that user's token."""
    if current_user.id != user_id:
        raise HTTPException(status_code=403, detail="Not enough permissions")
    changes = body.model_dump(exclude_none=True)
    if "password" in changes:
        changes["password_hash"] = await run_in_threadpool(hasher.hash, changes.pop("password"))
    for field, value in changes.items():
        setattr(current_user, field, value)
    try:
        await session.commit()
    except IntegrityError:
        raise HTTPException(status_code=409, detail="A user with this email already exists") from None
    await session.refresh(current_user)
    return current_user


health_router = APIRouter()


@health_router.get("/healthz", response_model=Health)
async def healthz() -> Any:
    """The process answers."""
    return {"status": "ok"}


# --- The application


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            settings.database_url or "", pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        yield
        await engine.dispose()

    app = FastAPI(title="auth-service baseline", lifespan=lifespan)
    app.state.settings = settings
    app.state.hasher = make_password_hasher(settings)
    app.state.dummy_hash = app.state.hasher.hash(secrets.token_urlsafe(24))
    app.include_router(router)
    app.include_router(health_router)
    return app

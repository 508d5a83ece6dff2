"""The one settings object: environment variables (prefix AUTH_), an optional YAML file, defaults."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from auth_service.cpu_quota import usable_cpus

ENV_PREFIX = "AUTH_"
CONFIG_FILE_ENV = "AUTH_CONFIG_FILE"

# Known only so that they can be refused outside development.
DEV_SIGNING_KEY = "dev-only-signing-key-not-for-production-0123456789"
PLACEHOLDER_SECRETS = frozenset({DEV_SIGNING_KEY, "changeme", "change-me", "secret", "CHANGE_ME", ""})

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME_COST = 2
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# The shortest HS256 signing key, admin token and batch token accepted outside development.
MIN_SECRET_BYTES = 32


class LenientEnvSource(EnvSettingsSource):
    """The environment, keeping a value that is not valid JSON (AUTH_TOKEN_KEYS='{bad') as its string.

    pydantic-settings raises on the first such value, before validation, so one typo hid every other
    problem; kept as a string, it fails validation beside them (config_errors.py reports them all).
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


def otel(name: str, default: Any, **constraints: Any) -> Any:
    """A field read from the standard OpenTelemetry variable NAME (no AUTH_ prefix), or given by field name."""
    return Field(default, validation_alias=AliasChoices(name.lower(), name), **constraints)


class DatabaseSettings(BaseSettings):
    """What the schema commands (migrate, wait-for-schema) read: where the database is, how to log.

    A migration Job or an initContainer holds the DSN and no signing key (least privilege), so these
    commands validate nothing else and ignore the other AUTH_* variables; Settings adds the rest.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True)

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    # --- PostgreSQL
    database_url: str | None = Field(None, description="Empty: an embedded PostgreSQL under data_dir")
    # The request pools may go through PgBouncer in transaction mode (1.21 or later, with
    # max_prepared_statements, for asyncpg's prepared statements); LISTEN needs a session of its own
    # for as long as it listens, so the cache-invalidation listener must reach PostgreSQL directly.
    database_listener_url: str | None = Field(
        None, description="DSN of the LISTEN connection, bypassing PgBouncer; empty: the database URL in use"
    )
    data_dir: Path = Path(".data")
    db_connect_timeout_seconds: float = Field(2.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Values given > environment > the YAML file named by AUTH_CONFIG_FILE (a mounted ConfigMap)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, LenientEnvSource(settings_cls)]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise ValueError(f"{CONFIG_FILE_ENV}={config_file!r}: no such file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @field_validator("database_url", "database_listener_url")
    @classmethod
    def _normalise_dsn(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError(f"{info.field_name} must be a postgresql:// URL")
        return value


class Settings(DatabaseSettings):
    """Validated configuration of one service process. Build it from values in tests."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True, populate_by_name=True)

    # --- HTTP server
    server: Literal["uvicorn", "granian"] = Field(
        "uvicorn", description="uvicorn: in-process drain on SIGTERM, the fast lane; granian: no lane, drain by preStop"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    reuse_port: bool = Field(
        False, description="Bind the API port with SO_REUSEPORT: several processes on one address (server.py)"
    )
    fast_lane: bool = Field(
        True, description="Answer token checks and cached reads as the request is parsed (uvicorn only; api/lane.py)"
    )
    max_in_flight: int = Field(1024, ge=1, description="Requests served at once per process; beyond, 503")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Larger request bodies get 413")
    retry_after_seconds: int = Field(1, ge=1, description="Retry-After sent with every 503")
    drain_delay_seconds: float = Field(5.0, ge=0, description="Readiness 503 before accepting stops")
    graceful_timeout_seconds: float = Field(20.0, ge=0, description="Bound on finishing in-flight requests")
    # --- HTTP limits against slow and oversized clients (the ingress should have its own: README)
    http_max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="Request line plus headers; beyond, 431 and close"
    )
    http_header_timeout_seconds: float = Field(10.0, gt=0, description="A request head must arrive within this; 408")
    http_body_timeout_seconds: float = Field(10.0, gt=0, description="A body must arrive within this of its head; 408")
    http_keep_alive_timeout_seconds: float = Field(
        5.0, gt=0, description="Idle keep-alive connections close after this"
    )
    http_max_arriving_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Bodies still arriving (not yet admitted), held at once; beyond, 503"
    )
    http_send_timeout_seconds: float = Field(
        10.0, gt=0, description="A client that takes none of its response for this long is disconnected"
    )

    # --- PostgreSQL (the URLs and data_dir: DatabaseSettings)
    # Fixed-size pools (no overflow), as HikariCP recommends: overflow connections are opened under
    # load and closed on return, and each costs PostgreSQL a backend fork. With 10 + 5, cache misses
    # at 70% of saturation had a p99 of 15-20 ms and 9k requests/s at most; with 20 + 0, 2.6 ms and
    # 10k (bench, user_miss, 2026-11-28). Size each as its peak requests/s x round trip. The reads
    # (cache misses, logins, batch inserts) have asyncpg's pool; SQLAlchemy's keeps the other writes:
    # with 5 there, the mix less its hashing had a p99 of 159 ms at saturation, with 10, 45 (bench, 11-29).
    db_read_pool_size: int = Field(15, ge=1, description="asyncpg's pool: point reads, logins, batch inserts")
    db_pool_size: int = Field(10, ge=1, description="SQLAlchemy's pool: creates, updates, deletes")
    db_max_overflow: int = Field(0, ge=0)
    db_pool_acquire_timeout_seconds: float = Field(1.0, gt=0)
    db_statement_timeout_ms: int = Field(2000, ge=1)
    db_pool_recycle_seconds: int = Field(1800, ge=1)
    db_pool_max_waiters: int = Field(
        64, ge=0, description="Requests waiting for a pooled connection, per pool; beyond, 503 at once"
    )
    # gate.py says why: at 3x the misses' capacity the admitted reads waited behind 64 waiters.
    db_pool_overload_max_waiters: int = Field(
        0, ge=0, description="Waiters per pool while it is refusing requests (overloaded); at most db_pool_max_waiters"
    )

    # --- Cache (L1 in-process, optional L2 in Redis)
    cache_max_entries: int = Field(100_000, ge=1)
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    cache_ttl_seconds: float = Field(30.0, gt=0, description="Also the staleness bound if NOTIFY is lost")
    cache_negative_ttl_seconds: float = Field(2.0, ge=0)
    invalidation_reconnect_seconds: float = Field(1.0, gt=0)
    redis_url: str | None = None
    redis_timeout_seconds: float = Field(0.05, gt=0, description="Of a cache read or write in Redis")
    # A login waits for its hash (tens of ms) anyway, and a timed-out count costs more than a wait: the
    # other replicas read Redis, which may lack it. With 50 ms, a busy loop timed out on a healthy Redis.
    redis_counter_timeout_seconds: float = Field(
        0.5, gt=0, description="Of a login or signup counter's call to Redis; past it, PostgreSQL's counters"
    )
    redis_retry_after_seconds: float = Field(5.0, gt=0, description="How long Redis is skipped after a fault")

    # --- Passwords (argon2id)
    password_min_length: int = Field(8, ge=8)
    password_max_length: int = Field(1024, ge=64, le=4096)
    argon2_time_cost: int = Field(OWASP_MIN_TIME_COST, ge=1)
    argon2_memory_kib: int = Field(OWASP_MIN_MEMORY_KIB, ge=8)
    argon2_parallelism: int = Field(1, ge=1)
    # Which library computes argon2id: both write and read the same PHC strings, so a change keeps every
    # stored hash. libsodium (PyNaCl) hashes with one lane only (argon2_parallelism 1) and costs less
    # CPU per hash at the same parameters (`python -m bench.hashing` measures both).
    argon2_backend: Literal["libsodium", "argon2-cffi"] = "libsodium"
    # The CPUs this process may use (cpu_quota.py), not the node's: in a 1-CPU pod on a 64-core node
    # os.cpu_count() is 64, and 64 argon2 threads of 19 MiB each would take 1.2 GiB and share one
    # CPU's quota, so hashes would queue in the threads instead of being refused with a 503.
    hash_workers: int = Field(default_factory=usable_cpus, ge=1)
    hash_queue_max: int = Field(32, ge=0, description="Hashes waiting beyond the workers; beyond, 503")
    hash_worker_nice: int = Field(0, ge=0, le=19, description="Scheduling niceness of the hashing threads")
    hash_client_share: float = Field(
        0.25, gt=0, le=1, description="Share of the hashing capacity one client address may hold at once"
    )
    # Imported hashes (POST /v1/users:batch) are verified at their own parameters on every login: a
    # hash with m=4 GiB, t=1000 would make each wrong guess on that account a multi-second, GiB-sized
    # denial of service. Outside this range, the item gets a 422.
    argon2_import_min_memory_kib: int = Field(OWASP_MIN_MEMORY_KIB, ge=8)
    argon2_import_max_memory_kib: int = Field(64 * 1024, ge=8)
    argon2_import_min_time_cost: int = Field(OWASP_MIN_TIME_COST, ge=1)
    # Every failed login is answered no sooner than the costliest verification allowed (api/routes/
    # auth.py), so this bound is what each wrong password costs in latency: 4 takes PHP's defaults
    # (m=64 MiB, t=4), RFC 9106's second choice (m=64 MiB, t=3) and OWASP's (m=19 MiB, t=2).
    argon2_import_max_time_cost: int = Field(4, ge=1)
    argon2_import_max_parallelism: int = Field(4, ge=1)

    # --- Login and signup limits, shared by the replicas (Redis when redis_url is set, else PostgreSQL)
    trusted_proxies: tuple[str, ...] = Field(
        (), description="Addresses or CIDRs whose X-Forwarded-For names the client (the ingress); empty: none"
    )
    login_failures_per_account_client: int = Field(
        10, ge=1, description="Failed logins on one account from one client per window; beyond, 429"
    )
    # OWASP ASVS 2.2.1 asks for at most 100 failed attempts an hour on one account.
    login_failures_per_account: int = Field(
        100, ge=1, description="Failed logins on one account from every client per window; beyond, 429"
    )
    login_failures_per_client: int = Field(
        300, ge=1, description="Failed logins from one client on every account per window; beyond, 429"
    )
    login_failure_window_seconds: int = Field(3600, ge=1)
    signups_per_client: int = Field(
        30, ge=1, description="Signups from one client per signup window (409 tells a taken email); beyond, 429"
    )
    signup_window_seconds: int = Field(60, ge=1)
    login_known_client_seconds: int = Field(
        30 * 24 * 3600,
        ge=0,
        description="A client that logged in to an account is exempt from that account's and its own ceiling "
        "this long (account + client still applies); 0: never",
    )

    # --- Tokens
    token_algorithm: Literal["HS256", "EdDSA"] = "HS256"
    token_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {"dev-1": SecretStr(DEV_SIGNING_KEY)},
        description="kid -> HS256 secret or Ed25519 private key (PEM); verifying keys for rotation",
    )
    token_active_kid: str = "dev-1"
    token_issuer: str = "auth-service"
    token_audience: str = "auth-service-clients"
    token_ttl_seconds: int = Field(900, ge=10)
    token_leeway_seconds: int = Field(5, ge=0, le=300, description="Clock skew allowed on exp, nbf, iat")
    token_cache_max_entries: int = Field(50_000, ge=0, description="Verified tokens remembered; 0: none")

    # --- Users
    batch_max_users: int = Field(1000, ge=1)
    batch_token: SecretStr | None = Field(
        None,
        description="Bearer token of POST /v1/users:batch; unset, the endpoint is open outside production, off in it",
    )

    # --- Admin port: metrics and profiling, never on the public port
    admin_host: str = Field("127.0.0.1", description="Beyond loopback, admin_token is required")
    admin_port: int = Field(9000, ge=0, le=65535)
    admin_token: SecretStr | None = Field(None, description="Bearer token for the admin endpoints")
    admin_metrics_require_token: bool = Field(False, description="Also ask the token of /metrics scrapes")

    # --- Tracing: the standard OpenTelemetry variables, so every OTel habit applies
    otel_sdk_disabled: bool = otel("OTEL_SDK_DISABLED", False)
    otel_service_name: str = otel("OTEL_SERVICE_NAME", "auth-service")
    otel_resource_attributes: str = otel("OTEL_RESOURCE_ATTRIBUTES", "")
    # Off unless asked for (`otlp` in the chart, `console` to debug locally).
    otel_traces_exporter: Literal["none", "otlp", "console"] = otel("OTEL_TRACES_EXPORTER", "none")
    otel_exporter_otlp_endpoint: str | None = otel("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc"] = otel("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    otel_exporter_otlp_timeout_ms: int = otel("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000, ge=1)
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = otel("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    otel_traces_sampler_arg: float = otel("OTEL_TRACES_SAMPLER_ARG", 0.01, ge=0, le=1)
    otel_bsp_max_queue_size: int = otel("OTEL_BSP_MAX_QUEUE_SIZE", 2048, ge=1)
    otel_bsp_max_export_batch_size: int = otel("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, ge=1)
    otel_bsp_schedule_delay_ms: int = otel("OTEL_BSP_SCHEDULE_DELAY", 5000, ge=1)
    otel_bsp_export_timeout_ms: int = otel("OTEL_BSP_EXPORT_TIMEOUT", 30_000, ge=1)

    # --- Logs and slow requests
    access_log_sample_ratio: float = Field(0.0, ge=0, le=1, description="Share of requests logged")
    slow_request_threshold_ms: float = Field(250.0, gt=0)
    slow_request_sample_ratio: float = Field(0.01, ge=0, le=1, description="Share of requests profiled")
    slow_request_max_per_second: float = Field(1.0, gt=0)
    slow_request_capacity: int = Field(32, ge=1, description="Slow-request profiles kept")
    slow_request_profile_max_seconds: float = Field(
        2.0, gt=0, description="A profile stops after this (it slows the whole loop while it runs)"
    )
    loop_lag_interval_seconds: float = Field(0.25, gt=0)

    # --- Runtime
    gc_freeze: bool = True
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    seed_demo_users: bool = False

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        """AUTH_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.1 as well as a JSON list."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR") from None
        return value

    @field_validator("admin_token", "batch_token")
    @classmethod
    def _refuse_empty_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Set but empty is a mistake (an unfilled Secret, `AUTH_BATCH_TOKEN=`), never "no token needed":
        # the batch import would be open and the admin port's guard passed.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(f"{info.field_name} is set but empty; unset it or give a token")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.token_active_kid not in self.token_keys:
            raise ValueError(f"token_active_kid {self.token_active_kid!r} is not among token_keys")
        if self.password_max_length < self.password_min_length:
            raise ValueError("password_max_length is smaller than password_min_length")
        if self.admin_host not in LOOPBACK_HOSTS and self.admin_token is None:
            raise ValueError(f"admin_host {self.admin_host!r} is beyond localhost: set AUTH_ADMIN_TOKEN")
        if self.argon2_import_min_memory_kib > self.argon2_import_max_memory_kib:
            raise ValueError("argon2_import_min_memory_kib is above argon2_import_max_memory_kib")
        if self.argon2_import_min_time_cost > self.argon2_import_max_time_cost:
            raise ValueError("argon2_import_min_time_cost is above argon2_import_max_time_cost")
        if self.argon2_backend == "libsodium" and self.argon2_parallelism != 1:
            raise ValueError("argon2_backend libsodium hashes with one lane: set argon2_parallelism 1 or argon2-cffi")
        if self.reuse_port and self.server == "granian":
            raise ValueError("reuse_port is uvicorn's: granian binds its own socket")
        if self.otel_bsp_max_export_batch_size > self.otel_bsp_max_queue_size:
            raise ValueError("OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE")
        if self.environment != "development":
            self._refuse_development_defaults()
        return self

    def _refuse_development_defaults(self) -> None:
        for kid, key in self.token_keys.items():
            if key.get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError(f"token key {kid!r} is a placeholder; set AUTH_TOKEN_KEYS outside development")
            if self.token_algorithm == "HS256" and len(key.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"token key {kid!r}: HS256 secrets need at least {MIN_SECRET_BYTES} bytes")
        for name, token in (("admin_token", self.admin_token), ("batch_token", self.batch_token)):
            if token is not None and token.get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{name} is a placeholder outside development")
            if token is not None and len(token.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"{name} needs at least {MIN_SECRET_BYTES} bytes outside development")
        if self.argon2_memory_kib < OWASP_MIN_MEMORY_KIB or self.argon2_time_cost < OWASP_MIN_TIME_COST:
            raise ValueError("argon2 parameters below the OWASP minimum (m=19 MiB, t=2) outside development")
        if self.environment == "production" and not self.database_url:
            raise ValueError("AUTH_DATABASE_URL is required in production (the embedded database is for dev)")

    @property
    def hash_capacity(self) -> int:
        """Hashes admitted at once: running plus queued."""
        return self.hash_workers + self.hash_queue_max


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with explicit overrides on top."""
    return Settings(**overrides)


def load_database_settings(**overrides: Any) -> DatabaseSettings:
    """The database's part of them alone (the schema commands), the other AUTH_* variables unread."""
    return DatabaseSettings(**overrides)

"""Settings: validated at start, with clear messages; placeholders refused outside development."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from auth_service.settings import DEV_SIGNING_KEY, Settings

STRONG_KEY = "k" * 48


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "database_url": "postgresql://u@db/auth",
        "token_keys": {"k1": STRONG_KEY},
        "token_active_kid": "k1",
    }
    values.update(overrides)
    return Settings(**values)


def test_development_defaults_are_valid() -> None:
    settings = Settings()
    assert settings.environment == "development"
    assert settings.token_keys["dev-1"].get_secret_value() == DEV_SIGNING_KEY
    assert settings.argon2_memory_kib >= 19 * 1024 and settings.argon2_time_cost >= 2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_database_urls_are_normalised_to_asyncpg(given: str, expected: str) -> None:
    assert Settings(database_url=given).database_url == expected


def test_a_non_postgres_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(database_url="mysql://u@h/d")


def test_production_refuses_the_development_signing_key() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        production(token_keys={"dev-1": DEV_SIGNING_KEY}, token_active_kid="dev-1")


def test_production_refuses_short_hs256_secrets() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        production(token_keys={"k1": "short-but-not-a-placeholder"})


def test_production_refuses_argon2_below_the_owasp_minimum() -> None:
    with pytest.raises(ValidationError, match="OWASP"):
        production(argon2_memory_kib=8 * 1024)


def test_production_requires_a_database_url() -> None:
    with pytest.raises(ValidationError, match="AUTH_DATABASE_URL"):
        production(database_url=None)


def test_the_active_kid_must_be_a_configured_key() -> None:
    with pytest.raises(ValidationError, match="not among token_keys"):
        production(token_active_kid="k2")


def test_reuse_port_is_refused_with_granian_which_binds_its_own_socket() -> None:
    assert Settings(reuse_port=True).reuse_port
    with pytest.raises(ValidationError, match="reuse_port is uvicorn's"):
        Settings(reuse_port=True, server="granian")


def test_pool_sizes_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings(db_pool_size=0)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Settings(db_pool_sise=3)  # type: ignore[call-arg]


def test_environment_variables_use_the_auth_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The environment is the feature under test here, hence monkeypatch rather than values.
    monkeypatch.setenv("AUTH_DB_POOL_SIZE", "7")
    monkeypatch.setenv("AUTH_TOKEN_KEYS", '{"k9": "' + STRONG_KEY + '"}')
    monkeypatch.setenv("AUTH_TOKEN_ACTIVE_KID", "k9")
    settings = Settings()
    assert settings.db_pool_size == 7
    assert settings.token_keys["k9"].get_secret_value() == STRONG_KEY


def test_a_yaml_file_fills_in_below_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("db_pool_size: 4\ncache_ttl_seconds: 12.5\nport: 9000\n")
    monkeypatch.setenv("AUTH_CONFIG_FILE", str(config))
    monkeypatch.setenv("AUTH_PORT", "9100")
    settings = Settings()
    assert (settings.db_pool_size, settings.cache_ttl_seconds) == (4, 12.5)
    assert settings.port == 9100


def test_a_missing_yaml_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match="no such file"):
        Settings()


@pytest.mark.parametrize("name", ["admin_token", "batch_token"])
@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_an_empty_token_is_refused_everywhere(name: str, environment: str) -> None:
    # `AUTH_BATCH_TOKEN=` once opened the batch import in production: empty is never "no token needed".
    values = {"environment": environment, name: "  "}
    with pytest.raises(ValidationError, match=f"{name} is set but empty"):
        production(**values) if environment == "production" else Settings(**values)


@pytest.mark.parametrize("name", ["admin_token", "batch_token"])
def test_short_or_placeholder_tokens_are_refused_outside_development(name: str) -> None:
    with pytest.raises(ValidationError, match=f"{name} needs at least 32 bytes"):
        production(**{name: "x" * 31})
    with pytest.raises(ValidationError, match=f"{name} is a placeholder"):
        production(**{name: "changeme"})
    assert production(**{name: "x" * 32})
    assert Settings(**{name: "short-is-fine-in-development"})


def test_the_admin_port_beyond_loopback_needs_a_real_token() -> None:
    with pytest.raises(ValidationError, match="admin_token is set but empty"):
        production(admin_host="0.0.0.0", admin_token="")  # noqa: S104
    assert production(admin_host="0.0.0.0", admin_token="a" * 40).admin_host == "0.0.0.0"  # noqa: S104


def test_the_import_range_must_be_a_range() -> None:
    with pytest.raises(ValidationError, match="argon2_import_min_memory_kib is above"):
        Settings(argon2_import_min_memory_kib=65536, argon2_import_max_memory_kib=32768)
    with pytest.raises(ValidationError, match="argon2_import_min_time_cost is above"):
        Settings(argon2_import_min_time_cost=5, argon2_import_max_time_cost=4)

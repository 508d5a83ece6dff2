"""Configuration problems as an operator meets them: `auth-service` started with a bad environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from auth_service import config_errors
from auth_service.settings import Settings
from tests.test_cli import CLI, cli_env

DSN_PASSWORD = "dsn-password-never-printed"


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`auth-service seed`, which loads the full settings first; it must stop before touching a database."""
    values = {"AUTH_DATABASE_URL": f"postgresql://u:{DSN_PASSWORD}@127.0.0.1:1/none"} | env
    return subprocess.run(
        [CLI, "seed"], env=cli_env(**values), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_problem_is_reported_at_once_without_a_traceback(tmp_path: Path) -> None:
    completed = start(
        tmp_path,
        AUTH_TOKEN_KEYS="{not json",
        AUTH_PORT="eighty",
        AUTH_DB_POOL_SIZE="0",
        AUTH_BATCH_TOKEN="",
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    assert lines[0] == "invalid configuration (4 problems):"
    problems = "\n".join(lines[1:])
    assert (
        "AUTH_TOKEN_KEYS: Input should be a valid dictionary (a JSON value: the given one is not valid JSON)"
        in problems
    )
    assert "AUTH_PORT: Input should be a valid integer" in problems and "(given: 'eighty')" in problems
    assert "AUTH_DB_POOL_SIZE: Input should be greater than or equal to 1 (given: '0')" in problems
    assert "AUTH_BATCH_TOKEN: batch_token is set but empty" in problems


def test_secret_values_are_never_printed(tmp_path: Path) -> None:
    completed = start(
        tmp_path,
        AUTH_ENVIRONMENT="production",
        AUTH_TOKEN_KEYS='{"k1": "short-secret-value"}',
        AUTH_TOKEN_ACTIVE_KID="k1",
        AUTH_ADMIN_TOKEN="short-admin-token",
        AUTH_DATABASE_URL=f"mysql://u:{DSN_PASSWORD}@h/d",
    )
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert "AUTH_DATABASE_URL: database_url must be a postgresql:// URL" in completed.stderr
    for secret in (DSN_PASSWORD, "short-secret-value", "short-admin-token"):
        assert secret not in completed.stderr + completed.stdout


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    completed = start(tmp_path, AUTH_CONFIG_FILE=str(missing))
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert completed.stderr.splitlines() == [
        "invalid configuration (1 problem):",
        f"  - AUTH_CONFIG_FILE={str(missing)!r}: no such file",
    ]


def test_problems_in_the_config_file_name_its_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("port: eighty\nhash_wrkers: 2\n")
    completed = start(tmp_path, AUTH_CONFIG_FILE=str(config))
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert f"port in {config} (or AUTH_PORT): Input should be a valid integer" in completed.stderr
    assert f"hash_wrkers in {config}: Extra inputs are not permitted" in completed.stderr


def test_a_config_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("port: [unclosed\n")
    completed = start(tmp_path, AUTH_CONFIG_FILE=str(config))
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert f"AUTH_CONFIG_FILE={str(config)!r} is not valid YAML" in completed.stderr


def test_unknown_auth_variables_are_warned_about_with_the_closest_setting() -> None:
    environ = {
        "AUTH_HASH_WORKER": "3",
        "AUTH_PORT": "8000",
        "AUTH_CONFIG_FILE": "x",
        "OTEL_SERVICE_NAME": "a",
        "AUTH_ZZZ": "",
    }
    assert config_errors.unknown_variables(environ) == [
        "AUTH_HASH_WORKER is not a setting and is ignored; did you mean AUTH_HASH_WORKERS?",
        "AUTH_ZZZ is not a setting and is ignored",
    ]


def test_the_warning_reaches_the_log_of_a_started_command(tmp_path: Path) -> None:
    # migrate --check on an unreachable database: exits 3 after loading and logging.
    completed = subprocess.run(
        [CLI, "migrate", "--check"],
        env=cli_env(AUTH_DATABASE_URL="postgresql://u@127.0.0.1:1/none", AUTH_DB_CONECT_TIMEOUT_SECONDS="1"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 3
    assert (
        "AUTH_DB_CONECT_TIMEOUT_SECONDS is not a setting and is ignored; did you mean AUTH_DB_CONNECT_TIMEOUT_SECONDS?"
        in completed.stderr
    )


def test_every_setting_has_the_variable_name_the_warning_checks() -> None:
    names = {config_errors.env_name(name, field) for name, field in Settings.model_fields.items()}
    assert {"AUTH_PORT", "AUTH_TOKEN_KEYS", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER_ARG"} <= names
    assert not config_errors.unknown_variables(dict.fromkeys(names, ""))


@pytest.mark.parametrize("value", ["10.0.0.0/8, 192.168.1.1", '["10.0.0.0/8", "192.168.1.1"]'])
def test_trusted_proxies_take_a_list_or_commas(value: str) -> None:
    import json

    given = json.loads(value) if value.startswith("[") else value
    assert Settings(trusted_proxies=given).trusted_proxies == ("10.0.0.0/8", "192.168.1.1")

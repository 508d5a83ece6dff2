"""Configuration problems, all at once and readable: which variable or file key, what is wrong, and
never a secret's value. Unknown AUTH_* variables (a typo leaves a setting at its default) are named.

pydantic's ValidationError already collects every field's problem; what it lacks is where the value
came from (AUTH_PORT, or `port` in the config file) and a form without type URLs and secret inputs.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from auth_service.settings import CONFIG_FILE_ENV, ENV_PREFIX, Settings

T = TypeVar("T", bound=BaseSettings)

# AUTH_* variables that are not settings but are read by name elsewhere.
OTHER_VARIABLES = frozenset({CONFIG_FILE_ENV, "AUTH_TEST_DATABASE_URL"})
# Errors of fields whose environment value is JSON (pydantic's error types).
JSON_TYPES = frozenset({"dict_type", "list_type", "tuple_type", "set_type"})
# Values that carry credentials without being SecretStr (a DSN's password).
CREDENTIAL_FIELDS = frozenset({"database_url", "database_listener_url", "redis_url"})


class ConfigurationError(Exception):
    """Every problem of one configuration, each on a line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        count = len(self.problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"invalid configuration ({count} problem{'s' if count != 1 else ''}):\n{lines}"


def load(loader: Callable[[], T], settings_cls: type[BaseSettings] = Settings) -> T:
    """`loader()`, or ConfigurationError naming every problem of the environment and config file."""
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        # Without the file the other values are unknown: checking them would report false problems.
        raise ConfigurationError([f"{CONFIG_FILE_ENV}={config_file!r}: no such file"])
    try:
        return loader()
    except ValidationError as exc:
        fields = settings_cls.model_fields
        raise ConfigurationError([describe(err, fields, config_file) for err in exc.errors()]) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError([f"{CONFIG_FILE_ENV}={config_file!r} is not valid YAML: {exc}"]) from None


def describe(error: Mapping[str, Any], fields: Mapping[str, FieldInfo], config_file: str | None) -> str:
    """One error as `WHERE: message (given: VALUE)`, the value left out for secrets."""
    name = str(error["loc"][0]) if error.get("loc") else ""
    field = fields.get(name)
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") in JSON_TYPES and isinstance(error.get("input"), str):
        message += " (a JSON value: the given one is not valid JSON)"
    if field is None:
        where = f"{name} in {config_file}" if name and config_file else "settings"
        return f"{where}: {message}" if name else message
    variable = env_name(name, field)
    given = os.environ.get(variable)
    where = variable if given is not None or not config_file else f"{name} in {config_file} (or {variable})"
    if given is not None and not is_secret(name, field):
        return f"{where}: {message} (given: {given!r})"
    return f"{where}: {message}"


def env_name(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:  # the OTEL_* fields: AliasChoices(name, NAME)
        return str(choices[-1])
    return ENV_PREFIX + name.upper()


def is_secret(name: str, field: FieldInfo) -> bool:
    # repr, not `is`: the annotation may be `SecretStr | None` or a dict of them (token_keys).
    return name in CREDENTIAL_FIELDS or "SecretStr" in repr(field.annotation)


def unknown_variables(environ: Mapping[str, str], settings_cls: type[BaseSettings] = Settings) -> list[str]:
    """A warning for each AUTH_* variable that names no setting, with the closest one when there is."""
    known = {env_name(name, field) for name, field in settings_cls.model_fields.items()} | OTHER_VARIABLES
    warnings = []
    for variable in sorted(environ):
        if variable.upper().startswith(ENV_PREFIX) and variable.upper() not in known:
            close = difflib.get_close_matches(variable.upper(), sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{variable} is not a setting and is ignored{hint}")
    return warnings

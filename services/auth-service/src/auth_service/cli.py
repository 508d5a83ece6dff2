"""The `auth-service` command: serve, migrate, wait-for-schema, seed, create-user, smoke."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from auth_service import config_errors
from auth_service.db.embedded import asyncpg_url, start_embedded
from auth_service.observability.logs import configure_logging
from auth_service.settings import DatabaseSettings, Settings, load_database_settings, load_settings
from auth_service.smoke import SmokeFailed, run_smoke

# Each command imports the rest of what it needs in its own body: alembic, say, is 0.4 s of imports
# that `serve` would pay at every start (and a pod's start is its time to ready).

DEMO_USERS = [
    ("alice@example.com", "Alice Example", "correct-horse-battery-staple"),
    ("bob@example.com", "Bob Example", "correct-horse-battery-staple"),
]

# Exit codes of `migrate --check` and `wait-for-schema`.
EXIT_NOT_AT_HEAD = 1
EXIT_USAGE = 2  # argparse's, for bad arguments
EXIT_DATABASE_UNREACHABLE = 3

log = logging.getLogger("auth_service.cli")
_embedded_server: Any = None  # kept referenced: the embedded server stops when its last user exits


def database_url(settings: DatabaseSettings) -> str:
    """The configured URL, or in development with none, the embedded server's (started if needed)."""
    global _embedded_server
    if settings.database_url:
        return settings.database_url
    if settings.environment != "development":
        raise SystemExit("AUTH_DATABASE_URL is required outside development")
    _embedded_server = start_embedded(settings.data_dir)
    url = asyncpg_url(_embedded_server)
    print(f"embedded PostgreSQL under {settings.data_dir.resolve() / 'pg'} ({url})", file=sys.stderr)
    return url


def cmd_migrate(settings: DatabaseSettings, args: argparse.Namespace) -> None:
    from auth_service.db import migrate

    if args.check:
        _check_schema(settings, args.revision)
        return
    if args.downgrade:
        migrate.downgrade(database_url(settings), args.revision)
    else:
        migrate.upgrade(database_url(settings), args.revision)
    print(f"migrated to {args.revision}")


def _check_schema(settings: DatabaseSettings, target: str) -> None:
    from auth_service.db import revision

    if target != "head":
        _fail(f"--check compares with head, not {target!r}", EXIT_USAGE)
    try:
        state = revision.schema_state(database_url(settings), settings.db_connect_timeout_seconds)
    except revision.DatabaseUnreachable as exc:
        _fail(f"database unreachable: {exc}", EXIT_DATABASE_UNREACHABLE)
    if not state.at_head:
        _fail(f"schema not at head: {state.describe()}", EXIT_NOT_AT_HEAD)
    print(f"schema at head: {state.describe()}")


def cmd_wait_for_schema(settings: DatabaseSettings, args: argparse.Namespace) -> None:
    from auth_service.db import revision

    def report(reason: str) -> None:
        print(f"waiting for the schema: {reason}", flush=True)

    url, check_timeout = database_url(settings), settings.db_connect_timeout_seconds
    try:
        state = revision.wait_for_head(url, args.timeout, args.interval, check_timeout, report)
    except revision.SchemaWaitTimedOut as exc:
        _fail(str(exc), EXIT_NOT_AT_HEAD)
    print(f"schema at head: {state.describe()}")


def cmd_smoke(settings: None, args: argparse.Namespace) -> None:
    try:
        run_smoke(args.url, args.timeout, say=lambda line: print(line, flush=True))
    except (SmokeFailed, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    print("smoke test passed")


def _fail(message: str, code: int) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(code)


def cmd_seed(settings: Settings, args: argparse.Namespace) -> None:
    url = database_url(settings)
    created = asyncio.run(_create_users(settings, url, DEMO_USERS))
    print(f"demo users: {created} created, {len(DEMO_USERS) - created} already there")


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> None:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    created = asyncio.run(_create_users(settings, database_url(settings), [(args.email, args.name, password)]))
    if not created:
        raise SystemExit(f"{args.email}: a user with this email already exists")
    print(f"created {args.email}")


async def _create_users(settings: Settings, url: str, users: Sequence[tuple[str, str, str]]) -> int:
    from auth_service.db.engine import Database
    from auth_service.security.passwords import PasswordHasher
    from auth_service.users.repository import DuplicateEmail, insert_user
    from auth_service.users.schemas import UserCreate

    db, hasher = await Database.open(settings, url), PasswordHasher(settings)
    created = 0
    try:
        for email, name, password in users:
            user = UserCreate(email=email, name=name, password=password)
            try:
                await insert_user(db, user.email, user.name, await hasher.hash(user.password))
                created += 1
            except DuplicateEmail:
                pass
    finally:
        hasher.close()
        await db.dispose()
    return created


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from auth_service.server import build_server, reuse_port_sockets

    url = database_url(settings)
    if args.migrate:
        from auth_service.db import migrate

        migrate.upgrade(url)
    if args.seed_demo:
        asyncio.run(_create_users(settings, url, DEMO_USERS))
    banner = (lambda: _print_banner(settings)) if args.banner else None
    if settings.server == "granian":
        from auth_service.server import serve_with_granian

        os.environ["AUTH_DATABASE_URL"] = url  # the worker process reads its settings from the environment
        if banner is not None:
            banner()
        serve_with_granian(settings)
        return
    build_server(settings, url, on_started=banner).run(sockets=reuse_port_sockets(settings))


def _print_banner(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    email, _, password = DEMO_USERS[0]
    print(
        f"""
auth-service on {base}
  API docs:  {base}/docs
  try it:
    TOKEN=$(curl -s -X POST {base}/v1/auth/token -H 'content-type: application/json' \\
      -d '{{"email":"{email}","password":"{password}"}}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s {base}/v1/auth/verify -H "Authorization: Bearer $TOKEN"; echo
""",
        flush=True,
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="auth-service", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--migrate", action="store_true", help="migrate to head before serving")
    serve.add_argument("--seed-demo", action="store_true", help="create the demo users if missing")
    serve.add_argument("--banner", action="store_true", help="print the docs URL and a try-it command")
    serve.set_defaults(run=cmd_serve)
    mig = commands.add_parser("migrate", help="bring the schema to a revision (default: head)")
    mig.add_argument("revision", nargs="?", default="head")
    direction = mig.add_mutually_exclusive_group()
    direction.add_argument("--downgrade", action="store_true", help="go down to the revision (e.g. base)")
    direction.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 0 at head, 1 if not, 3 if the database is unreachable",
    )
    # The migration Job and the schema wait hold only the DSN: only the database's settings are read.
    mig.set_defaults(run=cmd_migrate, load_settings=load_database_settings)
    wait = commands.add_parser("wait-for-schema", help="block until the schema is at head (an initContainer)")
    wait.add_argument("--timeout", type=seconds, default=300.0, help="give up after this long, exit 1 (default 300)")
    wait.add_argument("--interval", type=seconds, default=2.0, help="between checks (default 2)")
    wait.set_defaults(run=cmd_wait_for_schema, load_settings=load_database_settings)
    commands.add_parser("seed", help="create the demo users").set_defaults(run=cmd_seed)
    create = commands.add_parser("create-user", help="create one user")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create.set_defaults(run=cmd_create_user)
    smoke = commands.add_parser("smoke", help="readiness, then a token round trip with a throwaway user (a Helm test)")
    smoke.add_argument("--url", required=True, help="the service, http://HOST:PORT")
    smoke.add_argument("--timeout", type=seconds, default=10.0, help="bound on each request (default 10)")
    # A Helm test pod has none of the service's settings, and the smoke test needs none.
    smoke.set_defaults(run=cmd_smoke, load_settings=None)
    return root


def seconds(value: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        parsed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < parsed < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number of seconds above 0")
    return parsed


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    load = getattr(args, "load_settings", load_settings)
    if load is None:
        args.run(None, args)
        return
    try:
        settings = config_errors.load(load)
    except config_errors.ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    configure_logging(settings)
    for warning in config_errors.unknown_variables(os.environ):
        log.warning("%s", warning)
    args.run(settings, args)


if __name__ == "__main__":
    main()

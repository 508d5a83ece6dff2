"""How many failed logins and signups a client and an account may have, counted for every replica at once.

Three counters of failed logins, each over `login_failure_window_seconds`:
- account + client (`login_failures_per_account_client`, 10): the tight one. It stops a guesser
  without touching the real user, who comes from another client.
- account (`login_failures_per_account`, 100): OWASP ASVS 2.2.1's bound, against a guesser spread
  over many clients. Reached, it would lock the real user out too, so it does not apply to a client
  that logged in to that account successfully within `login_known_client_seconds`: an attacker
  cannot become one without the password.
- client (`login_failures_per_client`, 300): against one client trying many accounts (credential
  stuffing); also waived for a known client, so that a shared address (a NAT) does not lock out
  the users behind it from their own accounts.
A success resets its account + client counter (typos do not add up to a lockout; only someone with
the password can reset it). Failures are counted on the email as given (lower-cased), whether or not
a user has it: the 429 tells nothing. The counters are read before the hash and a failure counted
after it, so the attempts in flight when a limit is reached still get their answer: a limit can be
overrun by about what one client may have in flight, its share of the hashing queue, per replica
(300 guesses 20 at a time on one account: 18 answers, against a limit of 10 and a share of 8).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from auth_service.db.engine import Database
from auth_service.db.purge import purging
from auth_service.errors import ApiError, ServiceUnavailable
from auth_service.security.counters import Counter, CounterStore, MirroredCounters, Window, seconds_until
from auth_service.security.counters_postgres import PostgresCounters
from auth_service.settings import Settings

log = logging.getLogger(__name__)


def account_key(email: str) -> str:
    """A digest of the email: keys of one length whatever the email, and no addresses in Redis."""
    return hashlib.blake2b(email.lower().encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def too_many(code: str, message: str, retry_after: int) -> ApiError:
    return ApiError(429, code, message, headers={"Retry-After": str(retry_after)})


def blocked_for(windows: Mapping[str, Window], limits: Mapping[str, int]) -> int | None:
    """Seconds until every counter at its limit has ended its window; None when none is at its limit."""
    full = [
        windows[key].remaining_ms for key, limit in limits.items() if key in windows and windows[key].count >= limit
    ]
    return seconds_until(max(full)) if full else None


@dataclass
class LoginAttempt:
    """A login let through: the caller says how it ended (nothing to say when it got a 503)."""

    store: CounterStore
    failures: tuple[Counter, ...]
    known: Counter | None  # the mark to set on success, None when the client is known already

    async def failed(self) -> None:
        """The password was wrong, or the email unknown: count it, before the 401 is sent."""
        try:
            await self.store.count(self.failures)
        except ServiceUnavailable as exc:
            # The answer is a 401 all the same; the next attempt's read fails closed if this persists.
            log.info("a failed login was not counted: %s", exc.code)

    async def succeeded(self) -> None:
        """The password was right: reset this client's counter on the account, remember the client."""
        try:
            await self.store.clear([self.failures[0].key])
            if self.known is not None:
                await self.store.count([self.known])
        except ServiceUnavailable as exc:
            log.info("login counters not updated after a success: %s", exc.code)


class LoginLimits:
    def __init__(self, store: CounterStore, settings: Settings) -> None:
        self.store = store
        self.window = settings.login_failure_window_seconds
        self.per_pair = settings.login_failures_per_account_client
        self.per_account = settings.login_failures_per_account
        self.per_client = settings.login_failures_per_client
        self.known_seconds = settings.login_known_client_seconds
        self.signups_per_client = settings.signups_per_client
        self.signup_window = settings.signup_window_seconds
        # 429s given, for the metrics (a guessing or signup flood shows there before anywhere else).
        self.refused_logins = 0
        self.refused_signups = 0

    async def begin_login(self, email: str, client: str) -> LoginAttempt:
        """Let a login through, or refuse it with 429 when a limit is reached; before any hashing."""
        account = account_key(email)
        pair, by_account, by_client = (
            f"login:pair:{account}:{client}",
            f"login:account:{account}",
            f"login:client:{client}",
        )
        known = f"login:known:{account}:{client}"
        windows = await self.store.read([pair, by_account, by_client, known])
        limits = {pair: self.per_pair}
        if known not in windows:
            limits |= {by_account: self.per_account, by_client: self.per_client}
        if (wait := blocked_for(windows, limits)) is not None:
            self.refused_logins += 1
            raise too_many("too_many_failed_logins", "too many failed logins; retry later", wait)
        failures = tuple(Counter(key, self.window) for key in (pair, by_account, by_client))
        mark = Counter(known, self.known_seconds) if self.known_seconds and known not in windows else None
        return LoginAttempt(self.store, failures, mark)

    async def check_signup(self, client: str) -> None:
        """Refuse a signup with 429 past the client's limit: a signup's 409 tells that an email has an account."""
        key = f"signup:client:{client}"
        wait = blocked_for(await self.store.read([key]), {key: self.signups_per_client})
        if wait is not None:
            self.refused_signups += 1
            raise too_many("too_many_signups", "too many signups from this client; retry later", wait)

    async def count_signup(self, client: str) -> None:
        """Count a signup (created or taken alike); best effort, as a failed login's count."""
        try:
            await self.store.count([Counter(f"signup:client:{client}", self.signup_window)])
        except ServiceUnavailable as exc:
            log.info("a signup was not counted: %s", exc.code)


@contextlib.asynccontextmanager
async def open_login_limits(settings: Settings, db: Database) -> AsyncIterator[LoginLimits]:
    """The limits on their store (PostgreSQL, read from Redis when redis_url is set), purged in the background."""
    postgres = PostgresCounters(db)
    async with contextlib.AsyncExitStack() as stack:
        store: CounterStore = postgres
        if settings.redis_url:
            from auth_service.security.counters_redis import RedisCounters  # as services._open_l2 does

            redis = RedisCounters.from_url(settings.redis_url, settings.redis_counter_timeout_seconds)
            stack.push_async_callback(redis.close)
            # Counts made while Redis was skipped are in PostgreSQL alone until their windows end.
            skipped = settings.redis_retry_after_seconds
            longest = max(settings.login_failure_window_seconds, settings.signup_window_seconds)
            store = MirroredCounters(redis, postgres, skipped, reconcile=longest + skipped)
        await stack.enter_async_context(purging(postgres.purge, "attempt counters"))
        yield LoginLimits(store, settings)

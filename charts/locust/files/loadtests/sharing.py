"""How every Locust process gets the run's accounts: the master (or a standalone runner) seeds them,
the workers ask for them by message, and no user starts before its process has them.

A worker asks from its init event on (its own listener is registered by then: the master's
worker_connect event fires before that, so the master does not push on connect), and again every few
seconds until it has an answer. The master answers each worker once the seeding is done, so a worker
may join at any time, an autoscaled one too. When a run starts on another host (the web UI's form),
the master seeds anew and sends the new accounts to every worker before the users are spawned.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import gevent.event
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.accounts import Accounts, seed
from loadtests.service_client import ServiceClient, ServiceError
from loadtests.zipf import ZipfPicker

log = logging.getLogger(__name__)

ASK = "loadtests/accounts?"
GIVE = "loadtests/accounts"
# A worker asks again this often until it has an answer: a master that was not listening yet, or that
# restarted, answers the next ask.
ASK_AGAIN_SECONDS = 5.0
# How much longer than the master's seeding bound a user waits for the accounts before it gives up.
WAIT_MARGIN_SECONDS = 120.0


class SharedAccounts:
    """This process's copy of the run's accounts, and the pickers drawn from them."""

    def __init__(self) -> None:
        self._ready = gevent.event.Event()
        self._accounts: Accounts | None = None
        self._pickers: dict[float, ZipfPicker[str]] = {}
        # On the master: the workers waiting for their answer, asked once however often they ask.
        self.answering: set[str] = set()

    @property
    def current(self) -> Accounts | None:
        return self._accounts

    def publish(self, accounts: Accounts) -> None:
        self._accounts, self._pickers = accounts, {}
        self._ready.set()

    def withdraw(self) -> None:
        self._ready.clear()
        self._accounts, self._pickers = None, {}

    def wait(self, timeout: float | None) -> Accounts:
        """The accounts, once there are some; RuntimeError after `timeout` seconds without."""
        if not self._ready.wait(timeout) or self._accounts is None:
            raise RuntimeError(f"no test accounts within {timeout} s (the master's log says why)")
        return self._accounts

    def popular_ids(self, exponent: float) -> ZipfPicker[str]:
        """User ids drawn Zipf-like, the first seeded the most popular: one picker per process, not per user."""
        if exponent not in self._pickers:
            ids = [user_id for user_id, _ in self.wait(None).users]
            self._pickers[exponent] = ZipfPicker(ids, exponent)
        return self._pickers[exponent]


_shared: weakref.WeakKeyDictionary[Environment, SharedAccounts] = weakref.WeakKeyDictionary()


def shared_accounts(environment: Environment) -> SharedAccounts:
    if environment not in _shared:
        _shared[environment] = SharedAccounts()
    return _shared[environment]


def on_init(environment: Environment, **_: Any) -> None:
    """Locust's init listener: a worker asks the master; the master or a standalone runner seeds."""
    runner, box = environment.runner, shared_accounts(environment)
    if isinstance(runner, WorkerRunner):
        runner.register_message(GIVE, lambda msg, **_: box.publish(Accounts.from_message(msg.data)))
        gevent.spawn(_ask_until_answered, runner, box)
        return
    if isinstance(runner, MasterRunner):
        runner.register_message(ASK, lambda msg, **_: _answer(environment, box, msg.node_id), concurrent=True)
    environment.events.test_start.add_listener(lambda **_: _reseed_for_new_host(environment, box))
    if environment.host:
        try:
            box.publish(_seed(environment))
        except (ServiceError, ValueError) as error:
            log.error("cannot seed the test accounts: %s", error)
            raise SystemExit(1) from None


def _ask_until_answered(runner: WorkerRunner, box: SharedAccounts) -> None:
    while box.current is None:
        runner.send_message(ASK)
        gevent.sleep(ASK_AGAIN_SECONDS)


def _seed(environment: Environment) -> Accounts:
    options = environment.parsed_options
    assert environment.host is not None and options is not None
    client = ServiceClient(environment.host, options.batch_token)
    client.wait_ready(options.ready_timeout)
    return seed(client, options.seed_users, options.seed_sessions)


def _answer(environment: Environment, box: SharedAccounts, worker: str) -> None:
    """In a greenlet of its own: the accounts to one worker, as soon as they exist."""
    if worker in box.answering:
        return
    box.answering.add(worker)
    try:
        accounts = box.wait(None)
        assert isinstance(environment.runner, MasterRunner)
        environment.runner.send_message(GIVE, accounts.to_message(), client_id=worker)
    finally:
        box.answering.discard(worker)


def _reseed_for_new_host(environment: Environment, box: SharedAccounts) -> None:
    current = box.current
    if not environment.host or (current is not None and current.host == environment.host.rstrip("/")):
        return
    box.withdraw()
    try:
        accounts = _seed(environment)
    except (ServiceError, ValueError) as error:
        log.error("cannot seed the test accounts on %s: %s", environment.host, error)
        return
    box.publish(accounts)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(GIVE, accounts.to_message())

"""The Locust web UI as `make load-ui` serves it, used as a person would: in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright: no browser is downloaded)."""

from __future__ import annotations

import csv
import io
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from bench.ports import free_ports
from loadtests.endpoints import ENDPOINTS
from tests.loadtests.conftest import LoadService
from tests.loadtests.locust_runs import LOOSE_BUDGETS, REPO_ROOT, clean_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Kept after the test (loadtests/results/ is ignored by git but for the measured worker rate).
SCREENSHOT = REPO_ROOT / "loadtests" / "results" / "webui-test.png"
UI_START_SECONDS = 60.0
WAIT_SECONDS = 30.0


@pytest.fixture
def web_ui(load_service: LoadService, tmp_path: Path) -> Iterator[str]:
    """`python -m loadtests.local --ui` (make load-ui) on free ports; interrupted as Ctrl-C would, afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: `make browser` installs Debian's chromium (apt-get)")
    port, master_port = free_ports(2)
    env = clean_env(
        LOCUST_HOST=load_service.url,
        LOADTEST_BATCH_TOKEN=load_service.batch_token,
        LOADTEST_RESULTS_DIR=str(tmp_path),
        LOADTEST_SEED_USERS="100",
        LOADTEST_SEED_SESSIONS="10",
        **LOOSE_BUDGETS,
    )
    command = [sys.executable, "-m", "loadtests.local", "--ui", "--web-port", str(port), "--workers", "1"]
    command += ["--master-port", str(master_port), "--timeout", "120"]
    runner = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_ui(url, runner)
        yield url
        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=60)
        # On Ctrl-C Locust writes its reports and the gate judges the run (loose budgets: a pass).
        assert runner.returncode == 0, output.decode(errors="replace")[-3000:]
        assert b"loadtest PASS" in output
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()


def _wait_for_ui(url: str, runner: subprocess.Popen[bytes]) -> None:
    """The UI answers once the master has seeded the accounts (Locust's init event)."""
    deadline = time.monotonic() + UI_START_SECONDS
    while time.monotonic() < deadline:
        assert runner.poll() is None, runner.communicate()[0].decode(errors="replace")[-3000:]
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the web UI did not answer within {UI_START_SECONDS:.0f} s")


def header_figure(page: Page, label: str) -> str:
    """A figure of the UI's header bar (Status, Users, RPS, Failures), as shown."""
    found = re.search(rf"{label}\s+(\S+)", page.locator("header").inner_text())
    return found.group(1) if found else ""


def aggregated_requests(page: Page) -> int:
    """The statistics table's total of requests (its Aggregated row)."""
    cells = page.locator("tr", has_text="Aggregated").locator("td")
    return int(cells.nth(2).inner_text()) if cells.count() > 2 else 0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:.0f} s: {what}")
        time.sleep(0.25)


def test_the_web_ui_starts_a_run_from_its_form_shows_it_stops_it_and_gives_its_csv(web_ui: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            page.goto(web_ui)
            # The form of `make load-ui` (--class-picker): the shape, and the scenario's own parameters.
            page.select_option("select[name=shapeClass]", "Soak")
            page.get_by_text("Custom parameters").click()
            page.fill("input[name=targetRps]", "80")
            page.fill("input[name=duration]", "120")
            page.get_by_role("button", name="Start").click()

            wait_until(lambda: header_figure(page, "Status") == "RUNNING", "the run starts")
            wait_until(lambda: aggregated_requests(page) > 0, "requests are counted")
            first = aggregated_requests(page)
            wait_until(lambda: aggregated_requests(page) > first + 50, "the request count rises")
            wait_until(lambda: float(header_figure(page, "RPS") or 0) > 20, "the RPS rises")
            assert header_figure(page, "Failures") == "0%"
            rows = page.locator("tbody tr").all_inner_texts()
            assert any(ENDPOINTS["verify"].name in row for row in rows), rows
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            shown = aggregated_requests(page)

            page.get_by_role("button", name="Stop").click()
            wait_until(lambda: header_figure(page, "Status") == "STOPPED", "the run stops")
            page.get_by_role("tab", name="Download Data").click()
            with page.expect_download() as download:
                page.get_by_text("Download requests CSV").click()
            content = Path(download.value.path()).read_text()
        finally:
            browser.close()

    rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(io.StringIO(content))}
    total = rows[("", "Aggregated")]
    assert int(total["Request Count"]) >= shown
    assert total["Failure Count"] == "0"
    verify = rows[(ENDPOINTS["verify"].method, ENDPOINTS["verify"].name)]
    assert int(verify["Request Count"]) > 0 and float(verify["Requests/s"]) > 0

"""The manager's dashboard in headless Chromium (Debian's, driven by Playwright) against the
simulated station: a real broker serving the page over WebSockets, the real agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.dashboard_files import DashboardMissing, dashboard_dir
from agent.cli.demo import Customer, DemoStation, Outcome, script_customers, serve_customers
from agent.trust.manager_keys import manager_key
from agent.trust.signing import SignatureError, key_id, verify_document
from simulators.relay_board import RelayBoardSim
from tests.browser import CHROMIUM, CHROMIUM_ARGS, skip_reason
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "dashboard"




if (reason := skip_reason(dashboard_dir, DashboardMissing)) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


class Times:
    """When the agent closed each transaction (its own event, taken as it happens)."""

    def __init__(self) -> None:
        self.closed: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") == "transaction":
            with self.lock:
                self.closed[str(event["tx_id"])] = time.monotonic()


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoStation, Times]]:
    demo = DemoStation(pumps=2, dashboard=True, quiet=True, workdir=tmp_path_factory.mktemp("dash"))
    times = Times()
    demo.start()
    assert demo.station is not None
    demo.station.listeners.append(times)
    yield demo, times
    demo.close()


@pytest.fixture(scope="module")
def page(station: tuple[DemoStation, Times]) -> Iterator[Page]:
    demo, _ = station
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 800})  # a 10-inch tablet, landscape
        tab.goto(demo.dashboard_url)
        tab.fill("#login-user", demo.dashboard_user)
        tab.fill("#login-password", demo.dashboard_password)
        tab.fill("#login-passphrase", demo.dashboard_passphrase)  # the signing key's, not the broker's
        tab.keyboard.press("Enter")  # no mouse needed
        tab.wait_for_selector("body[data-ready='1']", timeout=15_000)
        expect(tab.locator(".pump")).to_have_count(2)
        yield tab
        browser.close()


def customer(demo: DemoStation, pump: int, skip: int = 0) -> Customer:
    fills = [c for c in script_customers(demo.registry, demo.products, 40, demo.token)
             if c.pump == pump and c.expect == "ok" and c.label == "eligible fill"]
    return fills[skip]


def test_wrong_password_is_refused_with_a_message(station: tuple[DemoStation, Times]) -> None:
    demo, _ = station
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page()
        tab.goto(demo.dashboard_url)
        tab.fill("#login-user", demo.dashboard_user)
        tab.fill("#login-password", "not-the-password")
        tab.click("button[type=submit]")
        expect(tab.locator("#login-error")).not_to_be_empty(timeout=10_000)
        assert tab.locator("#board").is_hidden()
        browser.close()


def test_pumps_and_todays_sales_show_after_sign_in(page: Page) -> None:
    expect(page.locator(".pump[data-pump='1'] .state")).to_have_text("Siap")
    expect(page.locator("#agent-status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#allowlist")).to_contain_text("1")


def test_transaction_appears_within_two_seconds_of_completing(station: tuple[DemoStation, Times],
                                                               page: Page) -> None:
    demo, times = station
    who = customer(demo, 1)
    outcomes: list[Outcome] = []
    serve_customers([who], demo.scanners[1], demo.board, 0, demo.tracker, outcomes, threading.Event())
    assert outcomes and outcomes[0].transaction is not None, "the fill did not complete"
    tx_id = outcomes[0].transaction["tx_id"]
    closed_at = times.closed[tx_id]
    row = page.locator(f"#recent tr[data-tx='{tx_id}']")
    left_ms = max(0.0, 2.0 - (time.monotonic() - closed_at)) * 1000
    expect(row).to_be_visible(timeout=left_ms)
    shown_after = time.monotonic() - closed_at
    assert shown_after <= 2.0, f"shown {shown_after:.2f} s after the agent closed it"
    litres = outcomes[0].transaction["dispensed_ml"] / 1000
    expect(row).to_contain_text(f"{litres:.2f}".replace(".", ","))
    expect(page.locator("#totals tr[data-product='pertalite']")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "transaction.png"), full_page=True)


def test_english_toggle_switches_every_label(page: Page) -> None:
    page.locator("#lang-toggle").focus()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("SPBU dashboard")
    expect(page.locator(".pump[data-pump='1'] .state")).to_have_text("Ready")
    expect(page.locator("#recent-title")).to_have_text("Recent transactions")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.screenshot(path=str(ARTIFACTS / "english.png"), full_page=True)
    page.locator("#lang-toggle").click()
    expect(page.locator(".pump[data-pump='1'] .state")).to_have_text("Siap")


def test_lock_from_the_keyboard_reaches_the_agent_and_the_pump_shows_locked(
        station: tuple[DemoStation, Times], page: Page) -> None:
    demo, _ = station
    assert demo.station is not None
    button = page.locator(".pump[data-pump='1'] button.pump-action")
    button.focus()
    page.keyboard.press("Enter")  # a manager without a mouse
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "confirm-lock.png"))
    page.keyboard.press("Escape")  # cancelled: nothing is sent
    expect(dialog).to_be_hidden()
    time.sleep(0.5)
    assert 1 not in demo.station.locked
    button.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")  # the confirm button has the focus
    expect(page.locator(".pump[data-pump='1']")).to_have_attribute("data-state", "locked", timeout=5_000)
    assert 1 in demo.station.locked  # the agent's own state, not the page's
    expect(page.locator(".pump[data-pump='1'] .state")).to_have_text("Dikunci")
    expect(page.locator("#toast")).to_contain_text("dijalankan")
    demo.scanners[1].scan(customer(demo, 1, skip=1).qr)
    refused = demo.tracker.next(1, "decision", 5.0)
    assert refused is not None and not refused["ok"] and refused["reason"] == "pump_locked"
    page.locator(".pump[data-pump='1'] button.pump-action").click()
    page.locator("#confirm-ok").click()
    expect(page.locator(".pump[data-pump='1']")).to_have_attribute("data-state", "idle", timeout=5_000)
    assert 1 not in demo.station.locked


def test_running_fill_shows_litres_and_emergency_stop_raises_an_alert(station: tuple[DemoStation, Times],
                                                                      page: Page) -> None:
    demo, _ = station
    who = customer(demo, 2)
    demo.scanners[2].scan(who.qr)
    decision = demo.tracker.next(2, "decision", 5.0)
    assert decision is not None and decision["ok"]
    assert wait_until(lambda: demo.board.relay_closed(1), 5.0)
    demo.board.lift_nozzle(1)
    card = page.locator(".pump[data-pump='2']")
    expect(card).to_have_attribute("data-state", "fuelling", timeout=5_000)
    expect(card.locator(".plate")).to_contain_text(decision["plate"])
    expect(card.locator(".litres")).not_to_have_text("0,00 L", timeout=5_000)
    board = demo.board
    assert isinstance(board, RelayBoardSim)
    board.press_estop()
    try:
        alert = page.locator("#alerts li[data-alert='estop']")
        expect(alert).to_be_visible(timeout=5_000)
        expect(alert).to_contain_text("2")
        expect(page.locator("#alert-count")).not_to_have_text("0")
        page.screenshot(path=str(ARTIFACTS / "estop.png"), full_page=True)
    finally:
        demo.board.hang_nozzle(1)
        board.release_estop()
        board.press_reset()
    assert demo.tracker.next(2, "transaction", 10.0) is not None


def test_commands_signed_in_the_browser_verify_with_the_manager_key_the_station_trusts(page: Page) -> None:
    password = "correct horse battery staple"
    envelope = page.evaluate(
        """async ([password]) => {
            const key = await SpbuVendor.managerKey("34.401.01", "manager", password);
            return SpbuVendor.signEnvelope("command", {station: "34.401.01", command: "lock_pump",
                                                       args: {pump: 1}, nonce: "n1"}, key);
        }""", [password])
    public = manager_key("34.401.01", "manager", password).public_key()
    body = verify_document(envelope.encode(), "command", {key_id(public): public})
    assert body == {"station": "34.401.01", "command": "lock_pump", "args": {"pump": 1}, "nonce": "n1"}
    other = manager_key("34.401.01", "manager", password + "!").public_key()
    with pytest.raises(SignatureError):  # another password derives another key
        verify_document(envelope.encode(), "command", {key_id(public): other})


def test_acknowledging_an_alert_removes_it_at_the_agent(station: tuple[DemoStation, Times], page: Page) -> None:
    demo, _ = station
    assert demo.station is not None
    alert = page.locator("#alerts li[data-alert='estop']")
    expect(alert).to_be_visible()
    alert.locator("button.ack").click()
    page.locator("#confirm-ok").click()
    expect(alert).to_have_count(0, timeout=5_000)
    assert "estop:2" not in demo.station.live.alerts

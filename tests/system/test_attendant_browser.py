"""The attendant's page in Debian's Chromium at a phone's size (360x740), driven by Playwright,
against the simulated station: the page served by mosquitto over TLS WebSockets with the
station's certificate, the real agent, the scanner, pump and EDC simulators on ptys.

Latency is measured from the agent's own decision event (its `at`) to the frame the page
drew the decision in (the page records both; same machine, same clock)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.attendant.files import AttendantPageMissing, attendant_dir
from agent.cli.demo import UNREGISTERED_ID, Customer, DemoStation, script_customers
from tests.browser import CHROMIUM, CHROMIUM_ARGS, skip_reason
from tests.conftest import validate
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "attendant"
SCANS = 50
P99_TARGET_MS = 300.0




if (reason := skip_reason(attendant_dir, AttendantPageMissing)) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Locator, Page, Playwright, ViewportSize, expect, sync_playwright  # noqa: E402

PHONE: ViewportSize = {"width": 360, "height": 740}  # a cheap Android phone, portrait


class Events:
    """The agent's own events, as it emits them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.items.append(dict(event))

    def find(self, kind: str, **match: Any) -> dict[str, Any] | None:
        with self.lock:
            return next((e for e in reversed(self.items) if e.get("type") == kind
                         and all(e.get(k) == v for k, v in match.items())), None)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoStation, Events]]:
    demo = DemoStation(pumps=2, attendant=True, edc=True, quiet=True, workdir=tmp_path_factory.mktemp("att"))
    events = Events()
    demo.start()
    assert demo.station is not None
    demo.station.listeners.append(events)
    yield demo, events
    demo.close()


def open_phone(browser: Browser, demo: DemoStation, device: str = "pulau-1") -> Page:
    assert demo.attendant is not None
    # The test CA is not in Chromium's store: the phone trusts it by enrolment (docs/attendant.md).
    context = browser.new_context(viewport=PHONE, ignore_https_errors=True, is_mobile=True, has_touch=True)
    # Record the page's vibrations and tones (headless Chromium has neither a motor nor a speaker).
    context.add_init_script("""
        window.spbuVibrations = [];
        navigator.vibrate = (pattern) => { window.spbuVibrations.push(pattern); return true; };
    """)
    tab = context.new_page()
    tab.goto(demo.attendant.url(device))
    tab.wait_for_selector("body[data-ready='1']", timeout=15_000)
    return tab


def sign_in(tab: Page, number: str, pin: str) -> None:
    tab.fill("#att-number", number)
    tab.fill("#att-pin", pin)
    tab.keyboard.press("Enter")


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def page(station: tuple[DemoStation, Events], browser: Browser) -> Page:
    demo, _ = station
    assert demo.attendant is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab = open_phone(browser, demo)
    sign_in(tab, demo.attendant.number, demo.attendant.pin)
    expect(tab.locator("#pumps")).to_be_visible(timeout=10_000)
    expect(tab.locator(".pump")).to_have_count(2)
    return tab


def eligible(demo: DemoStation, pump: int, skip: int) -> Customer:
    fills = [c for c in script_customers(demo.registry, demo.products, 60, demo.token)
             if c.pump == pump and c.expect == "ok" and c.label == "eligible fill"]
    return fills[skip]


def allowed(card: Locator, scan: Callable[[], None]) -> str:
    """Scan, then wait for a new allowed decision on this pump's card (not the last one still
    shown); its transaction id."""
    box = card.locator(".decision")
    before = box.get_attribute("data-tx") or ""
    scan()
    expect(box).not_to_have_attribute("data-tx", before, timeout=5_000)
    expect(box).to_have_attribute("data-ok", "1")
    return box.get_attribute("data-tx") or ""


def fill(demo: DemoStation, channel: int, litres_ml: int) -> None:
    assert wait_until(lambda: demo.board.relay_closed(channel), 5.0), "the relay never closed"
    start = demo.board.totaliser_ml(channel)
    demo.board.lift_nozzle(channel)
    assert wait_until(lambda: demo.board.totaliser_ml(channel) - start >= litres_ml, 20.0)
    demo.board.hang_nozzle(channel)


def test_wrong_pin_is_refused_on_the_page(station: tuple[DemoStation, Events], browser: Browser) -> None:
    demo, _ = station
    assert demo.attendant is not None
    tab = open_phone(browser, demo, "pulau-1")
    sign_in(tab, demo.attendant.number, "999999" if demo.attendant.pin != "999999" else "111111")
    expect(tab.locator("body")).to_have_attribute("data-signin", "wrong_pin", timeout=10_000)
    expect(tab.locator("#signin-error")).to_contain_text("PIN salah")
    assert tab.locator("#pumps").is_hidden()
    tab.context.close()


def measure_round(demo: DemoStation, page: Page, first_id: int) -> tuple[float, list[float]]:
    """SCANS refusals from the scanner simulator, alternating two pumps; each a new customer."""
    page.evaluate("window.spbuLatency.length = 0; window.spbuVibrations.length = 0")
    for i in range(SCANS):
        demo.scanners[1 + i % 2].scan(demo.token(first_id + i))
        page.wait_for_function(f"window.spbuLatency.length >= {i + 1}", timeout=10_000)
    shown = page.evaluate("window.spbuLatency")
    assert len(shown) == SCANS and all(s["code"] == "not_registered" for s in shown)
    latencies = sorted(s["shown_ms"] - s["decided_ms"] for s in shown)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"attendant page: decision shown after the agent's event, ms: p50 {latencies[len(latencies) // 2]:.1f}"
          f" p99 {p99:.1f} max {latencies[-1]:.1f} over {len(latencies)} scans")
    assert latencies[0] >= -5, "the page showed a decision before the agent made it: clocks disagree"
    # Each refusal buzzed the long double pattern (an allowed scan buzzes once, short).
    assert page.evaluate("window.spbuVibrations") == [[300, 120, 300]] * SCANS
    return p99, latencies


def test_scanner_decisions_show_within_300_ms_p99_of_the_agent_deciding(
        station: tuple[DemoStation, Events], page: Page) -> None:
    demo, _ = station
    # The machine is shared: one stall can push a round's p99 over; a slow page misses twice.
    p99s: list[float] = []
    for round_no in range(2):
        p99s.append(measure_round(demo, page, first_id=UNREGISTERED_ID + 1 + round_no * SCANS)[0])
        if p99s[-1] <= P99_TARGET_MS:
            break
    assert min(p99s) <= P99_TARGET_MS, f"p99 {p99s} ms from the agent's decision to the page, in both rounds"
    card = page.locator(".pump[data-pump='2']")
    expect(card.locator(".decision")).to_have_attribute("data-ok", "0")
    expect(card.locator(".reason")).to_contain_text("tidak terdaftar")
    expect(card.locator(".plate")).to_have_text("B 4242 ZZ")  # the full plate, here only
    page.locator("#lang-toggle").click()
    expect(card.locator(".verdict")).to_have_text("REFUSED")
    expect(card.locator(".reason")).to_have_text("Vehicle not registered.")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.locator("#lang-toggle").click()
    expect(card.locator(".verdict")).to_have_text("DITOLAK")


def test_kartu_makes_the_fill_a_card_payment_on_the_edc(station: tuple[DemoStation, Events], page: Page) -> None:
    demo, events = station
    assert demo.edc is not None
    card = page.locator(".pump[data-pump='1']")
    card.locator(".pay button[data-method='card']").click()
    expect(card.locator(".pay button[data-method='card']")).to_have_attribute("aria-pressed", "true")
    demo.edc.script("approve")
    who = eligible(demo, 1, 0)
    tx = allowed(card, lambda: demo.scanners[1].scan(who.qr))
    decision = events.find("decision", pump=1, tx_id=tx)
    assert decision is not None and decision["ok"]
    expect(card.locator(".plate")).not_to_be_empty()
    expect(card.locator(".allowed")).to_contain_text("Rp")
    page.screenshot(path=str(ARTIFACTS / "decision.png"))
    fill(demo, 0, 8_000)
    expect(card).to_have_attribute("data-last-tx", tx, timeout=20_000)
    expect(card).to_have_attribute("data-last-method", "card/paid", timeout=20_000)
    receipt = events.find("receipt", pump=1, tx_id=decision["tx_id"])
    assert receipt is not None and receipt["payment"]["method"] == "card"
    assert receipt["payment"]["status"] == "paid"
    # The terminal itself charged the card exactly what the fill cost (its own ledger).
    assert list(demo.edc.net_charged().values()) == [receipt["amount_idr"]] == [receipt["payment"]["amount_idr"]]
    hq = demo.hq
    assert hq is not None and demo.attendant is not None
    assert wait_until(lambda: any(t["tx_id"] == decision["tx_id"] for t in hq.transactions()), 10.0)
    record = next(t for t in hq.transactions() if t["tx_id"] == decision["tx_id"])
    validate("tx", record)
    assert record["attendant"] == demo.attendant.number  # every transaction names the attendant on shift
    card.locator(".reprint").click()
    expect(page.locator("#receipt-text")).to_contain_text("KARTU")
    page.screenshot(path=str(ARTIFACTS / "receipt.png"))
    page.locator("#receipt-close").click()


def test_kartu_chosen_during_the_fill_makes_that_fill_a_card_payment(
        station: tuple[DemoStation, Events], page: Page) -> None:
    demo, events = station
    assert demo.edc is not None
    card = page.locator(".pump[data-pump='1']")
    charged_before = sum(demo.edc.net_charged().values())
    who = eligible(demo, 1, 2)
    # Nothing picked: cash, unless the customer changes their mind.
    tx_id = allowed(card, lambda: demo.scanners[1].scan(who.qr))
    assert page.evaluate("window.spbuVibrations.at(-1)") == [80]
    assert wait_until(lambda: demo.board.relay_closed(0), 5.0)
    demo.board.lift_nozzle(0)
    expect(card).to_have_attribute("data-state", "fuelling", timeout=5_000)
    demo.edc.script("approve")
    card.locator(".pay button[data-method='card']").click()  # "pakai kartu" while the fuel flows
    start = demo.board.totaliser_ml(0)
    assert wait_until(lambda: demo.board.totaliser_ml(0) - start >= 4_000, 20.0)
    demo.board.hang_nozzle(0)
    expect(card).to_have_attribute("data-last-tx", tx_id, timeout=20_000)
    expect(card).to_have_attribute("data-last-method", "card/paid", timeout=20_000)
    receipt = events.find("receipt", pump=1, tx_id=tx_id)
    assert receipt is not None and receipt["payment"]["amount_idr"] == receipt["amount_idr"]
    assert sum(demo.edc.net_charged().values()) - charged_before == receipt["amount_idr"], (
        receipt, demo.edc.ledger())


def test_stop_button_stops_a_running_fill(station: tuple[DemoStation, Events], page: Page) -> None:
    demo, events = station
    who = eligible(demo, 2, 0)
    card = page.locator(".pump[data-pump='2']")
    tx_id = allowed(card, lambda: demo.scanners[2].scan(who.qr))
    assert wait_until(lambda: demo.board.relay_closed(1), 5.0)
    demo.board.lift_nozzle(1)
    expect(card).to_have_attribute("data-state", "fuelling", timeout=5_000)
    expect(card.locator(".litres")).not_to_have_text("0,00 L", timeout=5_000)
    card.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -56)")  # below the sticky header
    page.screenshot(path=str(ARTIFACTS / "fuelling.png"))
    card.locator(".stop").click()
    try:
        assert wait_until(lambda: events.find("transaction", tx_id=tx_id) is not None, 10.0), "the fill never ended"
        assert not demo.board.relay_closed(1)
    finally:
        demo.board.hang_nozzle(1)
    done = events.find("transaction", tx_id=tx_id)
    assert done is not None and 0 < done["dispensed_ml"] < who.want_ml
    expect(card.locator(".last-text")).to_contain_text("L", timeout=5_000)


def test_shift_close_report_on_the_page_and_to_headquarters(station: tuple[DemoStation, Events],
                                                            page: Page) -> None:
    demo, _ = station
    assert demo.station is not None and demo.attendant is not None
    page.locator("#close-shift").click()
    report = page.locator("#report")
    expect(report).to_be_visible(timeout=10_000)
    expect(report).to_contain_text("Kartu")
    page.screenshot(path=str(ARTIFACTS / "report.png"))
    row = demo.station.journal._db.execute(
        "SELECT report, published FROM attendant_shifts WHERE report IS NOT NULL ORDER BY shift_id DESC").fetchone()
    assert row is not None and row[1] == 1
    report = json.loads(row[0])
    validate("shift", report)
    assert report["card_idr"] > 0 and report["transactions"] >= 2
    for pump in ("1", "2"):  # the pumps' own meters agree with the journal over the shift
        assert report["totalisers"][pump]["delta_ml"] == report["totalisers"][pump]["journal_ml"], report
    page.locator("#report-done").click()
    expect(page.locator("#signin")).to_be_visible()
    sign_in(page, demo.attendant.number, demo.attendant.pin)  # the next tests' shift
    expect(page.locator("#pumps")).to_be_visible(timeout=10_000)
    time.sleep(0.2)


def write_y4m(path: Path, text: str, frames: int = 10, width: int = 640, height: int = 480) -> None:
    """A video of a QR code on white, as Chromium's fake camera plays it (YUV 4:2:0, grey)."""
    import cv2
    import numpy as np

    from simulators.camera import qr_matrix

    modules = qr_matrix(text)
    size = min(width, height) - 60
    code = cv2.resize(modules, (size, size), interpolation=cv2.INTER_NEAREST)
    luma = np.full((height, width), 255, dtype=np.uint8)
    top, left = (height - size) // 2, (width - size) // 2
    luma[top:top + size, left:left + size] = code
    chroma = np.full((height // 2) * (width // 2), 128, dtype=np.uint8).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)


def test_phone_camera_reads_a_signed_token_and_the_fill_is_authorised(
        station: tuple[DemoStation, Events], pw: Playwright, tmp_path: Path) -> None:
    demo, events = station
    assert demo.attendant is not None
    who = eligible(demo, 1, 1)
    video = tmp_path / "token.y4m"
    write_y4m(video, who.qr)
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}"]
    camera_browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        tab = open_phone(camera_browser, demo)
        if tab.locator("#signin").is_visible():  # the device's shift may still be open: then no sign-in
            sign_in(tab, demo.attendant.number, demo.attendant.pin)
        card = tab.locator(".pump[data-pump='1']")
        expect(card).to_be_visible(timeout=10_000)
        box = card.locator(".decision")
        before = box.get_attribute("data-tx") or ""
        card.locator(".scan").click()
        expect(tab.locator("body")).to_have_attribute("data-camera-read", "1", timeout=20_000)
        expect(box).not_to_have_attribute("data-tx", before, timeout=5_000)
        expect(box).to_have_attribute("data-ok", "1")
        tx_id = box.get_attribute("data-tx")
        decision = events.find("decision", pump=1, tx_id=tx_id)
        assert decision is not None and decision["ok"], "the agent did not authorise the camera's read"
        fill(demo, 0, 3_000)
        assert wait_until(lambda: events.find("transaction", tx_id=tx_id) is not None, 10.0)
        done = events.find("transaction", tx_id=tx_id)
        assert done is not None and done["dispensed_ml"] >= 3_000
        expect(card.locator(".last-text")).to_contain_text("L", timeout=5_000)
    finally:
        camera_browser.close()


def test_page_shows_offline_and_comes_back_by_itself(station: tuple[DemoStation, Events], page: Page) -> None:
    """Wi-Fi drops (here: the broker goes away), the page says so, and reconnects by itself."""
    demo, _ = station
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")
    demo.broker.stop()
    try:
        expect(page.locator("#conn")).to_have_attribute("data-state", "offline", timeout=10_000)
        expect(page.locator("#conn")).to_have_text("Offline")
    finally:
        demo.broker.start()
    expect(page.locator("#conn")).to_have_attribute("data-state", "online", timeout=20_000)
    assert demo.station is not None
    assert wait_until(lambda: demo.station is not None and demo.station.link.connected, 20.0)
    # The screen comes back on: the page checks its link and asks the agent who is signed in.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("#pumps")).to_be_visible()
    before = page.evaluate("window.spbuLatency.length")
    demo.scanners[1].scan(demo.token(UNREGISTERED_ID + 500))
    page.wait_for_function(f"window.spbuLatency.length > {before}", timeout=10_000)

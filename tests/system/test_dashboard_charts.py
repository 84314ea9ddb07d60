"""The manager's charts in headless Chromium (Debian's, via Playwright): litres per hour
per product today and each tank's volume over the shift with the tanker's delivery marked,
the tank cards and the shift reconciliation, all from a running station with two-grade
DART dispensers and a tank gauge. Leaves a screenshot for docs/ (docs/dashboard-charts.png)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.cli.demo import DemoStation, script_customers
from agent.tanks import CloseShift
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.system.test_dashboard_browser import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]

from playwright.sync_api import expect, sync_playwright  # noqa: E402


def test_charts_show_sales_per_hour_and_tank_levels_with_the_delivery(tmp_path: Path) -> None:
    demo = DemoStation(pumps=2, dashboard=True, quiet=True, workdir=tmp_path / "demo", pump_kind="dart",
                       nozzles=2, tanks=True, flow_lps=10.0)
    try:
        demo.start(timeout_s=30)
        assert demo.gauge is not None and demo.station is not None
        script = [c for c in script_customers(demo.registry, demo.products, 6, demo.token, grades=demo.grades)
                  if c.expect == "ok"][:4]
        demo.serve(script[:2], timeout_s=40)
        demo.gauge.deliver(2, 5_000)
        time.sleep(3)  # the console reports the delivery once it has ended
        demo.serve(script[2:], timeout_s=40)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1280, "height": 1400})
            tab.goto(demo.dashboard_url + "&lang=en")
            tab.fill("#login-user", demo.dashboard_user)
            tab.fill("#login-password", demo.dashboard_password)
            tab.keyboard.press("Enter")
            tab.wait_for_selector("body[data-ready='1']", timeout=15_000)
            # litres per hour: a bar chart with both products, drawn on a canvas by uPlot
            expect(tab.locator("#hourly-chart canvas")).to_have_count(1, timeout=15_000)
            expect(tab.locator("#hourly-chart .u-legend")).to_contain_text("Pertalite")
            expect(tab.locator("#hourly-chart .u-legend")).to_contain_text("Solar")
            assert tab.locator("#no-hourly").is_hidden()
            # tanks: one card each, the chart over the shift with the delivery marked
            expect(tab.locator("#tanks .tank")).to_have_count(2, timeout=10_000)
            expect(tab.locator("#tanks")).to_contain_text("Solar")
            expect(tab.locator("#tank-chart canvas")).to_have_count(1, timeout=10_000)
            expect(tab.locator("#tank-chart")).to_have_attribute("data-deliveries", "1", timeout=10_000)
            expect(tab.locator("#gauge-status")).to_have_attribute("data-state", "ok")
            tab.locator("#hourly-title").scroll_into_view_if_needed()
            tab.screenshot(path=str(ARTIFACTS / "charts.png"), full_page=True)
            # the shift reconciliation: the delivery counted, no variance alarm
            demo.station.events.put(CloseShift())
            demo.reconciliations.results.get(timeout=15)
            rows = tab.locator("#reconciliation tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(1)).to_contain_text("5,000")
            expect(tab.locator("#reconciliation td.alarm")).to_have_count(0)
            browser.close()
    finally:
        demo.close()

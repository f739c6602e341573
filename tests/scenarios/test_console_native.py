"""The console on the native stack, in a real browser: an API instance in production mode
whose engine runs elsewhere, so its pages read the alert store and Prometheus. Signed in
with the stack's admin token: Watchdog firing (written by the leading scheduler), the
scorecard and charts from Prometheus, a silence made and expired, Watchdog in the history;
no Content-Security-Policy violation on the way. Nothing it does raises or quiets an alert
the other scenarios wait for (its silence matches no rule)."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from tests.console.test_console import csp_watch, sign_in
from tests.scenarios.conftest import Session
from tests.support.browser import browser

__all__ = ["browser"]


async def test_the_console_of_a_production_instance(browser: Browser, native: Session) -> None:
    stack = native.stack
    base = stack.urls["api-1"]
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    violations = csp_watch(page)
    await sign_in(page, base, stack.secrets()["ADMIN_TOKEN"])
    await expect(page.get_by_role("heading", name="Scaling health")).to_be_visible()
    await expect(page.get_by_text(re.compile("from Prometheus"))).to_be_visible()
    requests = page.get_by_role("row", name=re.compile(r"^requests"))
    await expect(requests).to_contain_text("/s")
    await expect(page.locator("figure[data-chart=requests] .chart-text")).to_contain_text("Latest")

    await page.get_by_role("link", name="Alerts", exact=True).click()
    await expect(page.get_by_role("row", name=re.compile("Watchdog firing"))).to_be_visible()

    await page.get_by_role("link", name="Silences", exact=True).click()
    await page.get_by_label(re.compile("^Matchers")).fill('alertname="ConsoleNativeCheck"')
    await page.get_by_label("Your name").fill("native-check")
    await page.get_by_role("button", name="Silence", exact=True).click()
    row = page.get_by_role("row", name=re.compile("native-check"))
    await expect(row).to_be_visible()
    await row.get_by_role("button", name=re.compile("^Expire")).click()
    await expect(page.get_by_role("row", name=re.compile("native-check"))).to_have_count(0)

    await page.get_by_role("link", name="History", exact=True).click()
    await page.get_by_label("Alert").fill("Watchdog")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("rowheader", name="Watchdog").first).to_be_visible()

    await page.get_by_role("link", name="Traces", exact=True).click()
    await expect(page.get_by_role("heading", name="Traces")).to_be_visible()
    assert violations == [], violations
    await context.close()

"""The console in a real browser, on the embedded default: sign in (and a wrong token told so),
see Watchdog firing, make a latency fault fire and follow its example trace to the waterfall,
acknowledge it, silence it from the alert (a bad matcher told so as it is typed and when
sent), expire the silence, find the transitions in history, send a test alert; every page
without a Content-Security-Policy violation, keyboard-reachable, free of serious
accessibility violations (axe-core) and under 300 kB; its load time is printed.

``CONSOLE_SCREENSHOTS=docs/console`` saves the screenshots there (the README shows them);
otherwise they go to the test's own folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from playwright.async_api import Error as PlaywrightError

from tests.alerts.harness import served_api
from tests.console.conftest import TOKEN
from tests.support.users import listing, register_and_login

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
MAX_PAGE_BYTES = 300_000
PAGES = ("", "/alerts", "/silences", "/history", "/traces", "/receivers")


async def until(check: Callable[[], Awaitable[bool]], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.5)


async def again(page: Page) -> None:
    """Load the page anew (a browser's reload can find the previous load still going on a
    busy machine: the load is simply asked for again)."""
    try:
        await page.goto(page.url, wait_until="domcontentloaded")
    except PlaywrightError:
        await asyncio.sleep(0.5)
        await page.goto(page.url, wait_until="domcontentloaded")


def csp_watch(page: Page) -> list[str]:
    """Every message the browser logs about a Content-Security-Policy violation."""
    seen: list[str] = []
    page.on(
        "console",
        lambda message: (
            seen.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return seen


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/console")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


@pytest.mark.timeout(300)
async def test_the_console_from_sign_in_to_history(
    browser: Browser, console_environ: dict[str, str], tmp_path: Path
) -> None:
    shots = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    async with served_api(console_environ) as api:
        base = str(api.client.base_url).rstrip("/")
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        violations = csp_watch(page)

        # A wrong token is told so, and nothing is let in.
        await sign_in(page, base, "not-the-token-" + "x" * 12)
        await expect(page.get_by_role("alert")).to_contain_text("not this deployment's admin")
        assert (await context.cookies()) == [] or all(
            c["name"] != "dynoscope_console" for c in await context.cookies()
        )
        await page.screenshot(path=shots / "login.png")

        await page.get_by_label("Admin token").fill(TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Scaling health")).to_be_visible()
        (cookie,) = [c for c in await context.cookies() if c["name"] == "dynoscope_console"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # Watchdog fires from the first evaluation.
        await page.get_by_role("link", name="Alerts", exact=True).click()
        await expect(page.get_by_role("row", name=re.compile("Watchdog firing"))).to_be_visible()

        # A latency fault: the database's write lock held while a user writes.
        user = await register_and_login(api.client)
        on = await api.client.put("/admin/faults/db_slow", headers=ADMIN, json={"hold": 1.5})
        assert on.status_code == 200, on.text
        created = await api.client.post("/properties", json=listing(), headers=user["headers"])
        assert created.status_code == 201
        await api.client.delete("/admin/faults/db_slow", headers=ADMIN)

        # Sign-ins hash a password on purpose (~0.2-0.5 s): their route may be slow too.
        on_writes = page.get_by_role("row").filter(has_text=re.compile(r"route=\/properties\s"))
        slow_writes = on_writes.get_by_role("link", name="ApiLatencyP95High")

        async def latency_alert() -> bool:
            await again(page)
            return await slow_writes.count() > 0

        await until(latency_alert, seconds=20, what="ApiLatencyP95High on /properties")
        await page.screenshot(path=shots / "alerts.png", full_page=True)
        await slow_writes.click()
        await expect(page.get_by_text(re.compile(r"> 0\.5"))).to_be_visible()
        example = page.get_by_role("link", name=re.compile("^[0-9a-f]{32}$")).first
        await expect(example).to_be_visible()
        await page.screenshot(path=shots / "alert.png", full_page=True)
        alert_url = page.url

        # Its example trace, as a waterfall with the statement that waited.
        await example.click()

        async def waterfall() -> bool:
            if await page.get_by_role("heading", name=re.compile("^Trace ")).count():
                return True
            await again(page)  # the trace file is written a second after the request
            return False

        await until(waterfall, seconds=10, what="the example trace's waterfall")
        await expect(page.get_by_role("rowheader", name="POST /properties")).to_be_visible()
        await expect(page.get_by_text(re.compile("INSERT INTO properties"))).to_be_visible()
        await page.screenshot(path=shots / "trace.png", full_page=True)

        # Acknowledge it.
        await page.goto(alert_url)
        await page.get_by_label("Your name").fill("ada")
        await page.get_by_role("button", name=re.compile("^Acknowledge")).click()
        await expect(page).to_have_url(re.compile(r"acknowledged=1"))
        acks = (await api.client.get("/alerts/silences", headers=ADMIN)).json()["silences"]
        assert any(s["author"] == "ada" for s in acks), acks

        # Silence it from the alert: the matchers come prefilled; a bad one is named as it is
        # typed and when sent, with the API's words; a good one is listed, then expired.
        await page.get_by_role("link", name="Silence this alert…").click()
        matchers = page.get_by_label(re.compile("^Matchers"))
        await expect(matchers).to_have_value(re.compile(r'alertname="ApiLatencyP95High"'))
        good = await matchers.input_value()
        await matchers.fill('route=~"(("')
        await expect(page.locator("#matcher-check")).to_contain_text("matchers.0")
        await page.get_by_label("Your name").fill("grace")
        await page.get_by_role("button", name="Silence", exact=True).click()
        await expect(page.get_by_role("alert")).to_contain_text("matchers")
        api_says = await api.client.post(
            "/alerts/silences",
            headers=ADMIN,
            json={"matchers": ['route=~"(("'], "author": "x", "ends_at": "2099-01-01T00:00:00Z"},
        )
        assert api_says.status_code == 422
        first_api_message = api_says.json()["errors"][0]["message"]
        assert first_api_message.split(":")[0] in await page.get_by_role("alert").inner_text()
        await page.get_by_label(re.compile("^Matchers")).fill(good)
        await expect(page.locator("#matcher-check")).to_contain_text("Matchers are valid")
        await page.get_by_role("button", name="Silence", exact=True).click()
        await expect(page).to_have_url(re.compile(r"made=1"))
        silence_row = page.get_by_role("row", name=re.compile("grace"))
        await expect(silence_row).to_be_visible()
        await page.screenshot(path=shots / "silences.png", full_page=True)
        held = (await api.client.get("/alerts/silences", headers=ADMIN)).json()["silences"]
        assert any(s["author"] == "grace" for s in held)

        # The slow write leaves the 20 s window and the alert resolves: both transitions are
        # in the history, and the resolution's notification is held by the silence.
        await page.get_by_role("link", name="History", exact=True).click()
        await page.get_by_label("Alert").fill("ApiLatencyP95High")
        await page.get_by_label("Label").fill('route="/properties"')
        await page.get_by_role("button", name="Filter").click()
        transitions = page.get_by_role("table").first

        async def resolved() -> bool:
            await again(page)
            return await transitions.get_by_text("resolved").count() > 0

        await until(resolved, seconds=60, what="ApiLatencyP95High resolved in the history")
        await expect(transitions.get_by_text("firing")).not_to_have_count(0)
        await page.screenshot(path=shots / "history.png", full_page=True)
        deliveries = page.get_by_role("table").nth(1)
        await expect(deliveries.get_by_role("row").filter(has_text="firing")).not_to_have_count(0)
        await expect(deliveries.get_by_role("row").filter(has_text="resolved")).to_have_count(0)
        await expect(page.get_by_role("rowheader", name="Watchdog")).to_have_count(0)

        # A filter it cannot read is named.
        await page.get_by_label("Label").fill("route")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.get_by_role("alert")).to_contain_text("name=value")

        # Expire the silence.
        await page.get_by_role("link", name="Silences", exact=True).click()
        await silence_row.get_by_role("button", name=re.compile("^Expire")).click()
        await expect(page).to_have_url(re.compile(r"expired=1"))
        await expect(page.get_by_role("row", name=re.compile("grace"))).to_have_count(0)

        # Receivers: a test alert through the console receiver.
        await page.get_by_role("link", name="Receivers", exact=True).click()
        await page.get_by_role("button", name="Send a test alert to console").click()
        await expect(page.get_by_role("status")).to_contain_text("accepted the sample alert")
        await page.screenshot(path=shots / "receivers.png", full_page=True)

        # The overview draws its charts (from the engine's window) under the CSP.
        await page.get_by_role("link", name="Overview", exact=True).click()
        await expect(page.locator("figure[data-chart=requests] .chart-text")).to_contain_text(
            "Latest"
        )
        for text in await page.locator("figure[data-chart] .chart-text").all():
            await expect(text).not_to_contain_text("Loading")
            await expect(text).not_to_contain_text("Could not load")
        await page.screenshot(path=shots / "overview.png", full_page=True)
        await page.get_by_role("link", name="Traces", exact=True).click()
        await expect(
            page.get_by_role("link", name=re.compile("^[0-9a-f]{32}$")).first
        ).to_be_visible()
        await page.screenshot(path=shots / "traces.png", full_page=True)

        assert violations == [], violations
        await every_page_is_reachable_light_and_accessible(browser, context, base)
        await context.close()


async def every_page_is_reachable_light_and_accessible(
    browser: Browser, context: BrowserContext, base: str
) -> None:
    page = await context.new_page()
    violations = csp_watch(page)
    rows = []
    for suffix in PAGES:
        url = f"{base}/console{suffix}"
        await page.goto(url, wait_until="networkidle")
        figures = await page.evaluate(WEIGHT)
        rows.append((f"/console{suffix}", figures["bytes"], figures["interactive"]))
        assert figures["bytes"] < MAX_PAGE_BYTES, (url, figures)
        unreached = await keyboard_unreached(page)
        assert not unreached, f"{url}: not reachable with Tab: {unreached}"
    assert violations == [], violations
    print("\nconsole page weight and time (interactive, this run):")
    for path, size, interactive in rows:
        print(f"  {path:20} {size / 1024:7.1f} kB  {interactive:6.0f} ms")

    # axe-core is injected as a script, which the pages' CSP rightly refuses: this context
    # alone bypasses it, with the same session.
    audit = await browser.new_context(bypass_csp=True, storage_state=await context.storage_state())
    checker = await audit.new_page()
    # The audit can fail: a picture without a text alternative is a critical violation.
    await checker.set_content('<html lang="en"><title>t</title><img src="data:,">')
    await checker.add_script_tag(path=str(AXE))
    found = await checker.evaluate("async () => await axe.run()")
    assert "image-alt" in {v["id"] for v in found["violations"] if v["impact"] == "critical"}
    for suffix in PAGES:
        await checker.goto(f"{base}/console{suffix}", wait_until="networkidle")
        await checker.add_script_tag(path=str(AXE))
        result = await checker.evaluate("async () => await axe.run()")
        serious = [
            {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:3]}
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, f"/console{suffix}: {json.dumps(serious, indent=1)}"
    await audit.close()


WEIGHT = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const size = (e) => e.transferSize || e.encodedBodySize || 0;
  return {
    bytes: size(nav) + resources.reduce((sum, e) => sum + size(e), 0),
    interactive: nav.domInteractive,
  };
}"""


async def keyboard_unreached(page: Page) -> list[str]:
    """The links, buttons and fields that pressing Tab never focuses."""
    wanted: list[str] = await page.evaluate(
        """() => Array.from(document.querySelectorAll(
               'a[href], button, input:not([type=hidden]), textarea'))
             .filter(e => e.offsetParent !== null || e.classList.contains('skip'))
             .map((e, i) => (e.dataset.k = String(i)))"""
    )
    reached: set[str] = set()
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(len(wanted) + 5):
        await page.keyboard.press("Tab")
        key = await page.evaluate(
            "() => document.activeElement && document.activeElement.dataset.k"
        )
        if key is not None:
            reached.add(str(key))
    labels: list[str] = await page.evaluate(
        """(missing) => missing.map(k => {
             const e = document.querySelector(`[data-k="${k}"]`);
             return e.tagName + ':' + (e.textContent || e.name || '').trim().slice(0, 30);
           })""",
        [k for k in wanted if k not in reached],
    )
    return labels

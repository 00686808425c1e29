"""The admin as a support desk, in a real browser: the example project served by uvicorn,
a real worker, headless Chromium (Debian's, driven by Playwright).

A customer paid order 1 by bank transfer and the bank's notice never came: the support
person logs in, finds the run in the list (it says what it waits for), opens its page,
emits the event from the pre-filled form, and watches the page say the run completed,
without reloading it. Order 2's transfer came with the wrong amount: its page says which
step failed and why. Screenshots of each page go to ``build/screenshots/admin-*.png``, for
the operator's guide and for a reviewer to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import browser, example_environment, screenshot, served
from tests.test_example_project import manage

SCRATCH_DATABASE = f"durable_admin_pages_test_{os.getpid()}"
# How long a page may take to show what the worker did.
SECONDS = 15_000
PASSWORD = "support-desk-password-1"
SEED = """
from django.contrib.auth.models import User
from example_project.shop.models import Order
from example_project.shop import workflows
User.objects.create_superuser("support", "support@example.com", "{password}")
late = Order.objects.create(customer="Ada Lovelace", amount="42.00")
wrong = Order.objects.create(customer="Grace Hopper", amount="17.50")
done = Order.objects.create(customer="Alan Turing", amount="99.90")
print(workflows.bank_transfer.start(late.pk).id, late.pk)
print(workflows.bank_transfer.start(wrong.pk).id, wrong.pk)
print(workflows.fulfill_order.start(done.pk).id, done.pk)
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def desk_env(example_template: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield from example_environment(example_template, tmp_path, SCRATCH_DATABASE)


@pytest.fixture
def desk(desk_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Start the runs, then the worker and the server; return the runs' ids and the address."""
    seeded = manage(desk_env, "shell", "-c", SEED.format(password=PASSWORD))
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    printed = re.findall(r"^([0-9a-f-]{36}) (\d+)$", seeded.stdout, re.MULTILINE)
    assert len(printed) == 3, seeded.stdout + seeded.stderr
    (late, late_order), (wrong, wrong_order), (done, _) = printed
    # The bank's notice of order 2 says 1.75 where 17.50 was due: the run fails checking it.
    sent = manage(
        desk_env, "durable", "emit", f"bank.transfer_received:{wrong_order}", '{"amount": "1.75"}'
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    with served(desk_env, tmp_path) as (address, _procs):
        yield {"address": address, "late": late, "order": late_order, "wrong": wrong, "done": done}


def shots(page: Page, name: str) -> None:
    """The whole page for a reviewer, and what a window shows for the operator's guide."""
    screenshot(page, "admin", name)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "admin", f"{name}-window", full_page=False)


def log_in(page: Page, address: str) -> None:
    page.goto(f"{address}/admin/login/?next=/admin/django_durable/run/")
    page.get_by_label("Username").fill("support")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Select workflow run to view")).to_be_visible()
    page.locator("#toggle-nav-sidebar").click()  # the pages' own width (remembered)


def reload_until(page: Page, locator_text: str) -> None:
    """Reload the list until it shows ``locator_text`` (the list itself does not refresh)."""
    for _ in range(SECONDS // 250):
        if page.get_by_text(locator_text).count():
            return
        page.wait_for_timeout(250)
        page.reload()
    expect(page.get_by_text(locator_text).first).to_be_visible()


def test_support_finds_a_stuck_run_emits_its_event_and_sees_it_complete(
    desk: dict[str, str],
) -> None:
    address, event = desk["address"], f"bank.transfer_received:{desk['order']}"
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(5_000)
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        log_in(page, address)

        # The list says where each run is, in words.
        reload_until(page, "Failed at step")
        reload_until(page, f"Waiting for event {event}")
        late_row = page.locator("#result_list tr", has_text=desk["late"][-12:])
        expect(late_row).to_contain_text(re.compile(rf"Waiting for event {re.escape(event)}"))
        expect(late_row).to_contain_text("times out")
        wrong_row = page.locator("#result_list tr", has_text=desk["wrong"][-12:])
        expect(wrong_row).to_contain_text(
            "Failed at step check-amount after 1 attempt: FatalError: received '1.75'"
        )
        shots(page, "1-runs-list")

        # Search by the short id the list shows.
        page.locator("#searchbar").fill(desk["late"][-12:])
        page.get_by_role("button", name="Search").click()
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        page.locator("#result_list tbody tr a").first.click()

        # The run's page: what it waits for, first; the event's name already in the form.
        summary = page.locator("#durable-summary")
        expect(summary).to_contain_text(f"Waiting for event {event} since")
        expect(summary).to_contain_text("times out")
        expect(page.get_by_role("img", name=re.compile("Timeline of"))).to_be_visible()
        form = page.locator("form", has=page.get_by_role("button", name="Emit an event"))
        expect(form.get_by_label("Event name")).to_have_value(event)
        expect(page.get_by_role("button", name="Retry")).to_have_count(0)
        shots(page, "2-run-waiting")

        form.get_by_label("Data (JSON)").fill('{"amount": "42.00"}')
        form.get_by_role("button", name="Emit an event").click()
        expect(page.locator(".messagelist")).to_contain_text("emitted")
        # The page follows the run by itself and shows its outcome once it has finished.
        expect(summary).to_contain_text("Completed in", timeout=SECONDS)
        expect(summary).to_contain_text("3 steps")
        for finished_with in ("Emit an event", "Cancel", "Wake now", "Send a message"):
            expect(page.get_by_role("button", name=finished_with)).to_have_count(0)
        shots(page, "3-run-completed")

        # The history says who emitted what.
        page.get_by_role("link", name="History").click()
        expect(page.locator("#change-history")).to_contain_text("Emitted an event")
        expect(page.locator("#change-history")).to_contain_text("support")

        # The failed run's page says where and why, and offers Retry.
        page.goto(f"{address}/admin/django_durable/run/{desk['wrong']}/change/")
        expect(page.locator("#durable-summary")).to_contain_text(
            "Failed at step check-amount after 1 attempt: FatalError"
        )
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        shots(page, "4-run-failed")

        # The dashboard, from the app's index: the failure is listed and opens its run.
        page.get_by_role("link", name="Durable workflows").first.click()
        page.get_by_role("link", name="Open the dashboard").click()
        expect(page.get_by_role("heading", name="Workflow runs dashboard")).to_be_visible()
        expect(page.get_by_role("img").first).to_be_visible()  # the charts are pictures
        expect(page.get_by_role("heading", name="Last 20 failures")).to_be_visible()
        failure = page.locator("tr", has=page.get_by_role("link", name=desk["wrong"][-12:]))
        expect(failure.first).to_contain_text("FatalError: received '1.75'")
        shots(page, "5-dashboard")
        page.get_by_role("link", name=desk["wrong"][-12:], exact=False).first.click()
        expect(page.locator("#durable-summary")).to_contain_text("Failed at step check-amount")
        assert script_errors == []

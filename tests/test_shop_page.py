"""The example shop's order page in a real browser, as a shopper without a login uses it.

The example project is served by uvicorn, a real ``run_workflow_worker`` runs the
checkouts, and headless Chromium (Debian's, driven by Playwright) clicks through: place
an order, watch the bar move and the steps arrive, find the page's token revoked when
approving (it says to reload), reload, approve, read the result, and reload the finished
order. Everything runs on a database of its own: a temporary SQLite file, or with
``DURABLE_TEST_DB=postgres`` a scratch PostgreSQL database. Screenshots of each stage go
to ``build/screenshots/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import browser, example_environment, served
from tests.browser import screenshot as shot
from tests.test_example_project import manage

# Per process, so that several test runs can share one server.
SCRATCH_DATABASE = f"durable_shop_page_test_{os.getpid()}"
# How long the page may take to show what the run did (the steps take about 2 seconds).
SECONDS = 15_000
BEFORE_APPROVAL = ["Items in stock", "Items set aside for you", "Payment authorised"]

pytestmark = pytest.mark.slow


@pytest.fixture
def shop_env(example_template: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Return the environment of the example project on a fresh, migrated database."""
    yield from example_environment(example_template, tmp_path, SCRATCH_DATABASE)


@pytest.fixture
def shop(shop_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Return the address of the example project, served by uvicorn, with a worker."""
    with served(shop_env, tmp_path) as (address, _procs):
        yield address


def screenshot(page: Page, name: str) -> None:
    shot(page, "shop", name)


def step_texts(page: Page) -> list[str]:
    return page.locator("#steps li").all_text_contents()


def bar_value(page: Page) -> float:
    return float(page.locator("#progress-bar").evaluate("bar => bar.value"))


def test_a_shopper_orders_watches_approves_and_reads_the_result(
    shop: str, shop_env: dict[str, str]
) -> None:
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 900, "height": 760})
        page.set_default_timeout(5_000)  # fail well within the test's budget
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        follow_the_order(page, shop, shop_env)
        assert script_errors == []


def follow_the_order(page: Page, address: str, env: dict[str, str]) -> None:
    page.goto(f"{address}/shop/")
    expect(page.get_by_role("heading", name="Place an order")).to_be_visible()
    page.get_by_label("Your name").fill("Ada <b>Lovelace</b>")  # shown as typed, not as HTML
    page.get_by_label("Amount in euros").fill("42.50")
    screenshot(page, "1-order-form")
    page.get_by_role("button", name="Place order").click()

    # The page's address is the order's random public id, and carries no token.
    expect(page).to_have_url(re.compile(r"/shop/orders/[A-Za-z0-9_-]{22}/$"))
    assert "token" not in page.url
    expect(page.get_by_role("heading", name="Order for Ada <b>Lovelace</b>")).to_be_visible()
    expect(page.locator(".meta")).to_contain_text("€42.50")
    screenshot(page, "2-order-placed")

    # The bar moves: caught part way, before the run asks for the approval at 60%.
    part_way = page.wait_for_function(
        "() => { const v = document.getElementById('progress-bar').value;"
        " return v > 0 && v < 60 && v; }",
        timeout=SECONDS,
    ).json_value()
    assert 0 < part_way < 60
    expect(page.locator("#steps li.done").first).to_have_text("Items in stock")
    expect(page.locator("#progress-message")).not_to_have_text("Waiting for your approval")
    screenshot(page, "3-in-progress")

    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_visible(timeout=SECONDS)
    expect(page.locator("#progress-message")).to_have_text("Waiting for your approval")
    expect(page.locator("#progress-percent")).to_have_text("60%")
    assert bar_value(page) == 60
    assert step_texts(page) == [*BEFORE_APPROVAL, "Waiting for your approval"]
    expect(page.locator("#steps li.waiting")).to_have_text("Waiting for your approval")
    expect(page.locator("#approval-deadline")).to_have_text(
        re.compile(r"^Approve by \d?\d:\d\d( [AP]M)?, or the order is cancelled")
    )
    expect(page.locator("#outcome")).to_be_hidden()
    screenshot(page, "4-waiting-for-approval")

    # The shop ends the page's token (as when it runs out): Approve says to reload.
    public_id = page.url.rstrip("/").rsplit("/", 1)[1]
    revoked = manage(env, "shell", "-c", REVOKE.format(public_id=public_id))
    assert revoked.stdout.splitlines()[-1:] == ["1"], revoked.stdout + revoked.stderr
    approve.click()
    expect(page.get_by_role("alert")).to_have_text(
        "This page's access to your order has run out. Reload the page to carry on."
    )
    expect(approve).to_be_disabled()
    expect(page.get_by_role("button", name="Reload the page")).to_be_visible()
    expect(page.locator("#outcome")).to_be_hidden()
    screenshot(page, "5-token-refused")

    # A reload makes a new token; the steps so far come back from the stream.
    page.get_by_role("button", name="Reload the page").click()
    expect(page.get_by_role("alert")).to_be_hidden()  # the new page, not the old one
    expect(approve).to_be_visible(timeout=SECONDS)  # shown once the stream says it waits
    expect(approve).to_be_enabled()
    assert step_texts(page) == [*BEFORE_APPROVAL, "Waiting for your approval"]
    approve.click()

    outcome = page.locator("#outcome")
    expect(outcome.get_by_role("heading")).to_have_text("Your order is on its way", timeout=SECONDS)
    expect(outcome.locator("p")).to_have_text(
        re.compile(r"^Tracking number: TRK-\d{5}-[0-9A-F]{8}$")
    )
    expect(page.locator("#progress-percent")).to_have_text("100%")
    assert bar_value(page) == 100
    expect(page.locator("#approval")).to_be_hidden()
    expect(page.locator("#steps li").last).to_have_text("Handed to the carrier")
    assert step_texts(page) == [*BEFORE_APPROVAL, "Approved by you", "Handed to the carrier"]
    assert page.locator("#steps li.done").count() == 5
    screenshot(page, "6-shipped")

    # Finished: the server renders the same, and the page carries no token any more.
    tracking = outcome.locator("p").text_content()
    page.reload()
    expect(outcome.locator("p")).to_have_text(tracking or "")
    assert step_texts(page) == [*BEFORE_APPROVAL, "Approved by you", "Handed to the carrier"]
    assert bar_value(page) == 100
    assert page.locator("#follow").count() == 0
    screenshot(page, "7-finished-reloaded")


REVOKE = (
    "import django_durable as durable; from example_project.shop.models import Order; "
    "print(durable.revoke_tokens(Order.objects.get(public_id={public_id!r}).run_id))"
)

"""Fixes from the UI review of session 27, in a real browser against a real ``kiok
standalone``: a join token's lifetime says its limit in the minutes it asks for and keeps what
was typed; a new failure does not stand under the last success's notice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-review-s27") / "kiok")
    node.start()
    yield node
    node.stop()


def test_a_join_tokens_lifetime_is_limited_in_minutes_and_keeps_what_was_typed(
    kiok: Standalone, browser: Any
) -> None:
    """Before: 20000 minutes gave "ttlSeconds: Input should be less than or equal to 604800"
    (the API's field, in seconds) and the field went back to 60."""
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/join-tokens")
    form = page.get_by_test_id("create-join-token")
    ttl = form.get_by_label("Valid for (minutes, at most 10080: 7 days)")
    expect(ttl).to_have_value("60")
    ttl.fill("20000")
    form.get_by_role("button", name="Create join token").click()
    assert ttl.evaluate("(el) => el.validity.rangeOverflow") is True  # the browser says so, in minutes
    expect(ttl).to_have_value("20000")
    expect(page.get_by_test_id("join-token")).to_have_count(0)
    ttl.fill("10080")
    form.get_by_role("button", name="Create join token").click()
    expect(page.get_by_test_id("join-token")).to_contain_text("Copy it now")
    expect(ttl).to_have_value("60")  # the form is reset after a token is made
    context.close()
    assert console.errors == []


def test_a_new_failure_clears_the_last_success(kiok: Standalone, browser: Any) -> None:
    """Before: "User viewer created." stayed above "Failed: A user named viewer already
    exists"; saving a connection likewise (its own checks refused before the notice went)."""
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/users")
    form = page.get_by_test_id("create-user")
    for attempt in range(2):
        form.get_by_label("User", exact=True).fill("viewer")
        form.get_by_label("First password").fill("ViewerPass123!")
        form.get_by_role("button", name="Create user").click()
        if attempt == 0:
            expect(page.locator(".ok-box")).to_have_text("User viewer created.")
    expect(form.get_by_role("alert")).to_contain_text("viewer")
    expect(page.locator(".ok-box")).to_have_count(0)

    page.goto(kiok.url + "/settings/connections")
    form = page.get_by_test_id("create-connection")
    form.get_by_label("Id").fill("pg-main")
    form.get_by_label("Properties (one key=value a line)").fill("host=db.local")
    form.get_by_role("button", name="Save connection").click()
    expect(page.locator(".ok-box")).to_have_text("Connection pg-main saved.")
    form.get_by_label("Id").fill("pg-main")
    form.get_by_role("button", name="Save connection").click()
    expect(form.get_by_role("alert")).to_contain_text("connection pg-main exists")
    expect(page.locator(".ok-box")).to_have_count(0)
    context.close()
    assert console.errors == []

"""The settings pages in a real browser against a real ``kiok standalone`` (with
``kiok.backup.dir`` set): users (one deleted, confirmed and never oneself, and a policy detached
from one, neither offered to a user who may only read IAM; Create user and Create group create
only, never replacing one of that name); groups (create, add and remove a member, attach and
detach a policy); the policy editor (a JSON syntax error marked at its line, a trailing comma
and an open string too, the master's 400 shown inline, create and edit; New policy never
replacing one of that name; a new policy's draft not lost to Edit); an access key whose secret
is shown once and works against the API; changing one's own password (a wrong current one
refused inline) and logging in with the new one; connections (a description saved, shown and
confirmed; an existing one replaced only when asked); the KMS table's number headers over their
numbers; a join token's lifetime limited in the minutes it asks for; the audit log filtered,
with the filters in the URL, and every record's detail; form labels level and placeholders
that look like placeholders; ids whole in the settings and cluster tables on a phone; Backup &
Restore (an invalid cron refused inline, a schedule in words, Back up now, restore confirmed by
typing the id); and the maintenance banner on the settings pages while maintenance mode is
on."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import Console
from tests.e2e.test_ui_audit import PHONE, log_in, new_page
from tests.e2e.test_ui_run_access import open_page, wait_until

PW = "Settings-First-Pw-123"
NEW_PW = "Settings-Second-Pw-456"
READERS = {"Statement": [{"Effect": "Allow", "Action": ["dags:List", "runs:List"], "Resource": "*"}]}
#: Line 4 lacks the comma after the first statement.
BROKEN_JSON = """{
  "Statement": [
    {"Effect": "Allow", "Action": "dags:List", "Resource": "*"}
    {"Effect": "Allow", "Action": "runs:List", "Resource": "*"}
  ]
}"""
REFUSED_DOC = '{"Statement": [{"Effect": "Maybe", "Action": "dags:List"}]}'
GOOD_DOC = '{"Statement": [{"Effect": "Allow", "Action": ["dags:List"], "Resource": "*"}]}'
READ = {"Statement": [{"Effect": "Allow", "Action": ["dags:List", "dags:Read"], "Resource": "*"}]}
IAM_READ = {"Statement": [{"Effect": "Allow", "Action": ["iam:Read"], "Resource": "*"}]}
#: A trailing comma after the statement on line 3: the engine refuses the "]" on line 4 and,
#: in this Chromium, does not say where.
TRAILING_COMMA = """{
  "Statement": [
    {"Effect": "Allow", "Action": "dags:List", "Resource": "*"},
  ]
}"""
#: A string left open on line 3 (JSON strings cannot hold a line break).
OPEN_STRING = """{
  "Statement": [
    {"Effect": "Allow, "Action": "dags:List"}
  ]
}"""

#: How many lines each id in a settings or cluster table takes: [[text, lines], ...].
ID_LINES = """() => [...document.querySelectorAll(
    '.grid-table td .mono:not(a), .grid-table td.mono')].map((el) => {
  const range = document.createRange();
  range.selectNodeContents(el);
  const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
  return [el.textContent.trim(), tops.size];
})"""
#: Label tops per field bottom: labels whose fields end at the same height must start there too.
LABEL_TOPS = """(form) => [...form.querySelectorAll('label')].map((l) => {
  const field = l.querySelector('input, select');
  return [l.textContent.trim().split('\\n')[0], Math.round(field.getBoundingClientRect().bottom),
    l.getBoundingClientRect().top];
})"""
QUICK = """
dag: {id: quick}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    root = tmp_path_factory.mktemp("ui-settings")
    node = Standalone(root / "kiok", {"KIOK_BACKUP_DIR": str(root / "backups")})
    node.start()
    node.register(QUICK)
    for policy, document in (("dag-reader", READ), ("iam-reader", IAM_READ)):
        assert node.api(
            "POST", "/api/v1/iam/policies", json={"policy": policy, "document": document}
        ).is_success
    for user, attached in (("alice", ["dag-reader"]), ("iris", ["iam-reader"])):
        body = {"user": user, "password": PW, "policies": attached}
        assert node.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    yield node
    node.stop()


def admin_page(browser: Any, kiok: Standalone, start: str, **options: Any) -> tuple[Any, Any, Any]:
    context, page, console, _ = open_page(browser, kiok, "admin", ADMIN_PASSWORD, start, **options)
    return context, page, console


def signed_in(
    browser: Any, kiok: Standalone, start: str, user: str = "admin", password: str = ADMIN_PASSWORD, **kw: Any
) -> tuple[Any, Any, Console]:
    """A new page (``kw`` for its context), logged in as ``user`` and sent on to ``start``."""
    context, page, console = new_page(browser, **kw)
    log_in(page, kiok, start, user, password)
    return context, page, console


def users(kiok: Standalone) -> dict[str, Any]:
    return {u["user"]: u for u in kiok.api("GET", "/api/v1/iam/users").json()["users"]}


def policies(kiok: Standalone) -> dict[str, Any]:
    return {p["policy"]: p["document"] for p in kiok.api("GET", "/api/v1/iam/policies").json()["policies"]}


def test_groups_policy_editor_and_access_keys(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    assert kiok.api("POST", "/api/v1/iam/users", json={"user": "ann", "password": PW}).status_code == 201
    assert kiok.api(
        "POST", "/api/v1/iam/policies", json={"policy": "readers", "document": READERS}
    ).is_success
    context, page, console = admin_page(browser, kiok, "/settings/groups")

    # Groups: create one, add ann, attach and detach a policy, take ann out again.
    form = page.get_by_test_id("create-group")
    form.get_by_label("Group").fill("ops")
    form.get_by_role("button", name="Create group").click()
    row = page.locator("tr[data-group=ops]")
    expect(row.get_by_test_id("members")).to_contain_text("none")
    row.get_by_label("Add member to ops").select_option("ann")
    row.get_by_test_id("members").get_by_role("button", name="Add").click()
    expect(row.get_by_role("button", name="Remove ann from ops")).to_be_visible()
    row.get_by_label("Attach policy to ops").select_option("readers")
    row.get_by_test_id("group-policies").get_by_role("button", name="Add").click()
    expect(row.get_by_role("button", name="Detach readers from ops")).to_be_visible()
    users = {u["user"]: u for u in kiok.api("GET", "/api/v1/iam/users").json()["users"]}
    assert users["ann"]["groups"] == ["ops"]
    groups = {g["group"]: g for g in kiok.api("GET", "/api/v1/iam/groups").json()["groups"]}
    assert groups["ops"]["policies"] == ["readers"]
    page.screenshot(path=str(shots / "settings-groups.png"))
    row.get_by_role("button", name="Detach readers from ops").click()
    expect(row.get_by_test_id("group-policies")).to_contain_text("none")
    row.get_by_role("button", name="Remove ann from ops").click()
    expect(row.get_by_test_id("members")).to_contain_text("none")
    assert kiok.api("GET", "/api/v1/iam/users").json()["users"][-1]["groups"] == []

    # Policies: a syntax error is marked at its line and Save stays off; the master's 400 is
    # shown inline; then the policy is created and edited.
    page.get_by_label("Settings").get_by_role("link", name="Policies").click()
    expect(page).to_have_url(kiok.url + "/settings/policies")
    editor = page.get_by_test_id("policy-editor")
    editor.get_by_label("Policy name").fill("listers")
    editor.get_by_label("Policy document (JSON)").fill(BROKEN_JSON)
    expect(editor.get_by_test_id("json-problem")).to_have_attribute("data-line", "4")
    expect(editor.get_by_test_id("json-problem")).to_contain_text("line 4: not valid JSON")
    expect(editor.locator(".gutter .bad")).to_have_text("4\n")
    expect(editor.get_by_role("button", name="Save policy")).to_be_disabled()
    page.screenshot(path=str(shots / "settings-policy-editor.png"))
    editor.get_by_label("Policy document (JSON)").fill(REFUSED_DOC)
    editor.get_by_role("button", name="Save policy").click()
    expect(editor.get_by_role("alert")).to_contain_text(re.compile(r"Refused:.*Effect"))
    console.take("status of 400")
    editor.get_by_label("Policy document (JSON)").fill(GOOD_DOC)
    editor.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_contain_text("Policy listers saved.")
    page.locator("[data-policy=listers]").get_by_role("button", name="Edit listers").click()
    expect(editor.get_by_role("heading")).to_have_text("Edit policy listers")
    document = editor.get_by_label("Policy document (JSON)")
    document.fill(document.input_value().replace('"dags:List"', '"dags:List", "dags:Read"'))
    editor.get_by_role("button", name="Save policy").click()
    expect(page.locator("[data-policy=listers] pre")).to_contain_text("dags:Read")
    stored = {p["policy"]: p for p in kiok.api("GET", "/api/v1/iam/policies").json()["policies"]}
    assert stored["listers"]["document"]["Statement"][0]["Action"] == ["dags:List", "dags:Read"]

    # Access keys: the secret is shown once, works against the API, and is gone afterwards.
    page.get_by_label("Settings").get_by_role("link", name="Access keys").click()
    form = page.get_by_test_id("create-access-key")
    form.get_by_label("Your password").fill("Not-The-Admin-Password-1")  # a key of one's own
    form.get_by_role("button", name="Create access key").click()
    expect(form.get_by_role("alert")).to_contain_text("wrong password")  # refused, still signed in
    console.take("status of 403")
    form.get_by_label("Your password").fill(ADMIN_PASSWORD)
    form.get_by_role("button", name="Create access key").click()
    shown = page.get_by_test_id("new-access-key")
    key_id = shown.get_by_test_id("access-key-id").inner_text()
    secret = shown.get_by_test_id("access-key-secret").inner_text()
    assert len(secret) >= 20
    expect(shown.get_by_role("button", name="Copy id:secret")).to_be_visible()
    auth = {"Authorization": f"AccessKey {key_id}:{secret}"}
    me = httpx.get(kiok.url + "/api/v1/me", headers=auth, timeout=30)
    assert me.status_code == 200 and me.json()["user"] == "admin"
    expect(page.locator(f"tr[data-key='{key_id}']")).to_contain_text("admin")
    page.screenshot(path=str(shots / "settings-access-keys.png"))
    shown.get_by_role("button", name="Done, hide it").click()
    expect(page.get_by_test_id("new-access-key")).to_have_count(0)
    page.reload()
    expect(page.locator(f"tr[data-key='{key_id}']")).to_be_visible()
    assert secret not in page.content()
    page.get_by_role("button", name=f"Delete access key {key_id}").click()
    confirm = page.get_by_role("group", name=f"Confirm: Delete access key {key_id}")
    confirm.get_by_role("button", name="Yes, delete").click()
    expect(page.locator(f"tr[data-key='{key_id}']")).to_have_count(0)
    assert httpx.get(kiok.url + "/api/v1/me", headers=auth, timeout=30).status_code == 401
    context.close()
    assert console.errors == []


def test_a_password_typed_before_the_user_list_arrives_is_kept(kiok: Standalone, browser: Any) -> None:
    """The access-key form shows "For user" once the user list has loaded; a password typed
    before that (a slow master) must still be there to send, not silently emptied."""
    from playwright.sync_api import expect

    if [u["user"] for u in kiok.api("GET", "/api/v1/iam/users").json()["users"]] == ["admin"]:
        kiok.api("POST", "/api/v1/iam/users", json={"user": "ann", "password": PW})  # someone to pick
    context, page, console = admin_page(browser, kiok, "/settings/groups")
    held: list[Any] = []
    released: list[bool] = []

    def hold(route: Any) -> None:  # the user list answered only once the password is typed
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/v1/iam/users", hold)
    page.get_by_label("Settings").get_by_role("link", name="Access keys").click()
    form = page.get_by_test_id("create-access-key")
    form.get_by_label("Your password").fill("Not-The-Admin-Password-1")
    wait_until(page, lambda: held, "the user list to be asked for")
    released.append(True)
    for route in held:
        route.continue_()
    expect(form.get_by_label("For user")).to_be_visible()
    form.get_by_role("button", name="Create access key").click()
    expect(form.get_by_role("alert")).to_contain_text("wrong password")  # sent, refused
    console.take("status of 403")
    context.close()


def test_change_own_password(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    assert kiok.api("POST", "/api/v1/iam/users", json={"user": "pat", "password": PW}).status_code == 201
    context, page, console, _ = open_page(browser, kiok, "pat", PW, "/settings")
    # A user without policies has the pages every user has: its access keys and its password.
    tabs = page.get_by_label("Settings").get_by_role("link")
    expect(tabs).to_have_text(["Access keys", "Password"])
    tabs.get_by_text("Password").click()
    expect(page).to_have_url(kiok.url + "/settings/password")
    form = page.get_by_test_id("change-password")
    form.get_by_label("Current password").fill("not-the-password")
    form.get_by_label("New password", exact=True).fill(NEW_PW)
    form.get_by_label("New password again").fill(NEW_PW)
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("alert")).to_contain_text("the current password is wrong")
    console.take("status of 401")
    expect(page.get_by_test_id("user")).to_have_text("pat")  # still signed in
    page.screenshot(path=str(shots / "settings-password.png"))
    form.get_by_label("Current password").fill(PW)
    form.get_by_label("New password", exact=True).fill(NEW_PW)
    form.get_by_label("New password again").fill(NEW_PW)
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("status")).to_contain_text("Password changed.")
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User").fill("pat")
    page.get_by_label("Password").fill(NEW_PW)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user")).to_have_text("pat")
    # pat may not list runs: no Dashboard link, and "/" leads to a page pat may read (no 403).
    expect(page).to_have_url(re.compile(re.escape(kiok.url) + "/settings/"))
    expect(page.get_by_label("Main").get_by_role("link")).to_have_text(["Settings"])
    expect(page.get_by_role("alert")).to_have_count(0)
    old = httpx.post(kiok.url + "/api/v1/auth/login", json={"user": "pat", "password": PW}, timeout=30)
    assert old.status_code == 401
    context.close()
    assert console.errors == []


def test_audit_log_filters_in_the_url(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    bad = httpx.post(kiok.url + "/api/v1/auth/login", json={"user": "mallory", "password": "x"}, timeout=30)
    assert bad.status_code == 401
    context, page, console = admin_page(browser, kiok, "/settings/audit")
    audit = page.get_by_test_id("audit")
    expect(audit.locator("tbody tr").first).to_be_visible()
    filters = page.get_by_test_id("audit-filters")
    filters.get_by_label("Outcome").select_option("refused")
    filters.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(kiok.url + "/settings/audit?outcome=refused")
    expect(audit.locator("tbody tr").filter(has_text="mallory")).to_have_count(1)
    expect(audit.locator("tbody tr").filter(has_text="✓ ok")).to_have_count(0)
    filters = page.get_by_test_id("audit-filters")
    filters.get_by_label("Actor").fill("admin")
    filters.get_by_label("Action").fill("auth:*")
    filters.get_by_label("Outcome").select_option("")
    filters.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(kiok.url + "/settings/audit?actor=admin&action=auth%3A*")
    rows = audit.locator("tbody tr")
    expect(rows.first).to_contain_text("auth:Login")
    for text in rows.all_inner_texts():
        assert "admin" in text and "auth:" in text, text
    page.screenshot(path=str(shots / "settings-audit.png"))
    # The filters survive a reload (they are the URL), and a time range before any record
    # finds nothing.
    page.reload()
    expect(page.get_by_test_id("audit-filters").get_by_label("Actor")).to_have_value("admin")
    page.goto(kiok.url + "/settings/audit?until=2001-01-01T00:00:00Z")
    expect(page.get_by_test_id("audit-empty")).to_have_text("No records match.")
    expect(page.get_by_test_id("audit-filters").get_by_label("Until (UTC)")).to_have_value("2001-01-01T00:00")
    page.get_by_role("button", name="Clear filters").click()
    expect(page).to_have_url(kiok.url + "/settings/audit")
    expect(page.get_by_test_id("audit").locator("tbody tr").first).to_be_visible()
    context.close()
    assert console.errors == []


def test_delete_a_user_and_detach_a_policy_as_permitted(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    body = {"user": "carol", "password": PW, "policies": ["dag-reader", "iam-reader"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    context, page, console = signed_in(browser, kiok, "/settings/users")
    row = page.locator("tr[data-user=carol]")
    expect(row.get_by_role("button", name="Delete user carol")).to_be_visible()
    expect(page.locator("tr[data-user=admin]").get_by_role("button", name="Attach policy")).to_be_visible()
    # Neither reset nor delete for oneself.
    expect(page.locator("tr[data-user=admin]").get_by_role("button", name="Reset password")).to_have_count(0)
    expect(page.locator("tr[data-user=admin]").get_by_role("button", name="Delete user admin")).to_have_count(
        0
    )

    # × on a policy chip detaches it from the user.
    row.get_by_role("button", name="Detach iam-reader from carol").click()
    expect(page.get_by_role("status")).to_have_text("Policy iam-reader detached from carol.")
    expect(row.get_by_test_id("user-policies")).not_to_contain_text("iam-reader")
    assert users(kiok)["carol"]["policies"] == ["dag-reader"]

    # Delete asks first; Cancel keeps the user.
    row.get_by_role("button", name="Delete user carol").click()
    confirm = row.get_by_role("group", name="Delete carol")
    expect(confirm).to_contain_text("Delete carol? Its access keys go with it.")
    page.screenshot(path=str(shots / "s22b-users-delete-confirm.png"))
    confirm.get_by_role("button", name="Cancel").click()
    expect(row.get_by_role("button", name="Delete user carol")).to_be_visible()
    assert "carol" in users(kiok)
    row.get_by_role("button", name="Delete user carol").click()
    row.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_have_text("User carol deleted.")
    expect(page.locator("tr[data-user=carol]")).to_have_count(0)
    assert "carol" not in users(kiok)
    context.close()
    assert console.errors == []

    # A user who may only read IAM sees the policies, with nothing to detach or delete.
    context, page, console = signed_in(browser, kiok, "/settings/users", "iris", PW)
    row = page.locator("tr[data-user=alice]")
    expect(row.get_by_test_id("user-policies")).to_contain_text("dag-reader")
    expect(page.locator(".chip-x")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete user alice")).to_have_count(0)
    expect(page.get_by_role("button", name="Reset password")).to_have_count(0)
    context.close()
    assert console.errors == []


# Before, they replaced an existing user's password and policies, or a group's policies ("Create
# group admins" detached full-access from the admins).
def test_create_user_and_group_do_not_replace_existing_ones(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    reader = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": "*"}]}
    assert kiok.api(
        "POST", "/api/v1/iam/policies", json={"policy": "s25-read", "document": reader}
    ).is_success
    body = {"user": "viewer", "password": PW, "policies": ["s25-read"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    assert kiok.api(
        "POST", "/api/v1/iam/groups", json={"group": "analysts", "policies": ["s25-read"]}
    ).is_success

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/users")
    form = page.get_by_role("form", name="Create user")
    form.get_by_label("User").fill("viewer")
    form.get_by_label("First password").fill(PW + "-other")
    form.get_by_role("button", name="Create user").click()
    expect(form.get_by_role("alert")).to_contain_text("A user named viewer already exists")
    page.screenshot(path=str(shots / "s25-user-taken.png"))
    users = {u["user"]: u["policies"] for u in kiok.api("GET", "/api/v1/iam/users").json()["users"]}
    assert users["viewer"] == ["s25-read"]
    logged_in = httpx.post(
        kiok.url + "/api/v1/auth/login", json={"user": "viewer", "password": PW}, timeout=30
    )
    assert logged_in.status_code == 200  # the password stays too

    page.goto(kiok.url + "/settings/groups")
    form = page.get_by_role("form", name="Create group")
    form.get_by_label("Group").fill("analysts")
    form.get_by_role("button", name="Create group").click()
    expect(form.get_by_role("alert")).to_contain_text("A group named analysts already exists")
    groups = {g["group"]: g["policies"] for g in kiok.api("GET", "/api/v1/iam/groups").json()["groups"]}
    assert groups["analysts"] == ["s25-read"]
    context.close()
    assert console.errors == []

    # The API itself creates only when asked to (a client whose list is stale).
    create_only = {"If-None-Match": "*"}
    r = kiok.api("POST", "/api/v1/iam/users", json={"user": "viewer", "password": PW}, headers=create_only)
    assert r.status_code == 409 and "already exists" in r.json()["error"]["message"], r.text
    r = kiok.api(
        "POST", "/api/v1/iam/groups", json={"group": "analysts", "policies": []}, headers=create_only
    )
    assert r.status_code == 409 and "already exists" in r.json()["error"]["message"], r.text
    r = kiok.api("POST", "/api/v1/iam/groups", json={"group": "fresh", "policies": []}, headers=create_only)
    assert r.status_code == 201, r.text


def test_new_policy_never_replaces_one_of_the_same_name(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    before = policies(kiok)["full-access"]
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/policies")
    editor = page.get_by_test_id("policy-editor")
    expect(editor.get_by_role("heading")).to_have_text("New policy")
    # A name in the list: refused at the name field, nothing sent.
    editor.get_by_label("Policy name").fill("full-access")
    editor.get_by_role("button", name="Save policy").click()
    error = editor.get_by_test_id("policy-name-error")
    expect(error).to_contain_text("A policy named full-access already exists")
    expect(editor.get_by_label("Policy name")).to_be_focused()
    expect(editor.get_by_label("Policy name")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(shots / "s23-policy-name-taken.png"))
    assert policies(kiok)["full-access"] == before

    # One made elsewhere after the page loaded: the master refuses it (If-None-Match: *).
    doc = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": "*"}]}
    assert kiok.api("POST", "/api/v1/iam/policies", json={"policy": "late", "document": doc}).is_success
    editor.get_by_label("Policy name").fill("late")
    expect(error).to_have_count(0)
    editor.get_by_role("button", name="Save policy").click()
    expect(error).to_contain_text("A policy named late already exists")
    assert [s["Action"] for s in policies(kiok)["late"]["Statement"]] == [["dags:List"]]

    # A new name is created, and the form then edits it.
    editor.get_by_label("Policy name").fill("fresh-one")
    editor.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_have_text("Policy fresh-one saved.")
    expect(editor.get_by_role("heading")).to_have_text("Edit policy fresh-one")
    assert "fresh-one" in policies(kiok)
    page.screenshot(path=str(shots / "s23-policy-created.png"))
    context.close()
    console.take("409")
    assert console.errors == []


def test_a_new_policy_draft_is_not_lost_to_edit(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/policies")
    editor = page.get_by_test_id("policy-editor")
    editor.get_by_label("Policy name").fill("draft-one")
    editor.get_by_label("Policy document (JSON)").fill('{"Statement": []}')
    edit = page.get_by_role("button", name="Edit full-access")
    edit.click()
    ask = page.get_by_test_id("policy-discard")
    expect(ask).to_contain_text("Your changes to the new policy draft-one are not saved")
    expect(ask.get_by_role("button", name="Discard changes")).to_be_focused()
    page.screenshot(path=str(shots / "s23b-policy-discard.png"))
    # Keep editing (or Escape): the draft stays, the focus goes back to Edit.
    ask.get_by_role("button", name="Keep editing").click()
    expect(ask).to_have_count(0)
    expect(edit).to_be_focused()
    expect(editor.get_by_role("heading")).to_have_text("New policy")
    expect(editor.get_by_label("Policy name")).to_have_value("draft-one")
    expect(editor.get_by_label("Policy document (JSON)")).to_have_value('{"Statement": []}')
    # Discard: the policy is loaded.
    edit.click()
    ask.get_by_role("button", name="Discard changes").click()
    expect(editor.get_by_role("heading")).to_have_text("Edit policy full-access")
    expect(editor.get_by_label("Policy document (JSON)")).to_be_focused()
    # Unchanged: Edit and "New policy instead" ask nothing.
    editor.get_by_role("button", name="New policy instead").click()
    expect(editor.get_by_role("heading")).to_have_text("New policy")
    expect(ask).to_have_count(0)
    context.close()
    assert console.errors == []


def test_a_json_error_without_a_position_is_marked_at_its_line(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = signed_in(browser, kiok, "/settings/policies")
    editor = page.get_by_test_id("policy-editor")
    editor.get_by_label("Policy name").fill("commas")
    document = editor.get_by_label("Policy document (JSON)")
    document.fill(TRAILING_COMMA)
    problem = editor.get_by_test_id("json-problem")
    expect(problem).to_have_attribute("data-line", "4")
    expect(problem).to_contain_text("line 4: not valid JSON")
    expect(editor.locator(".gutter .bad")).to_have_text("4\n")
    expect(editor.get_by_role("button", name="Save policy")).to_be_disabled()
    page.screenshot(path=str(shots / "s22b-policy-trailing-comma.png"))
    document.fill(OPEN_STRING)
    expect(problem).to_have_attribute("data-line", "3")
    expect(editor.locator(".gutter .bad")).to_have_text("3\n")
    document.fill(TRAILING_COMMA.replace("},\n", "}\n"))
    expect(problem).to_have_count(0)
    expect(editor.get_by_role("button", name="Save policy")).to_be_enabled()
    context.close()
    assert console.errors == []


def test_a_connection_with_its_description_saved_and_confirmed(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = signed_in(browser, kiok, "/settings/connections")
    form = page.get_by_test_id("create-connection")
    form.get_by_label("Id").fill("billing-api")
    form.get_by_label("Type").fill("http")
    form.get_by_label("Description").fill("Billing service, read-only token")
    form.get_by_label("Properties").fill("url=https://billing.example\ntoken=s3cret")
    form.get_by_role("button", name="Save connection").click()
    expect(page.get_by_role("status")).to_have_text("Connection billing-api saved.")
    row = page.locator("tr[data-connection=billing-api]")
    expect(row.get_by_test_id("connection-description")).to_have_text("Billing service, read-only token")
    expect(form.get_by_label("Description")).to_have_value("")
    stored = kiok.api("GET", "/api/v1/connections/billing-api").json()
    assert stored["description"] == "Billing service, read-only token"
    assert "s3cret" not in page.content()
    page.screenshot(path=str(shots / "s22b-connections.png"))
    row.get_by_role("button", name="Delete connection billing-api").click()
    row.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_have_text("Connection billing-api deleted.")
    expect(row).to_have_count(0)
    context.close()
    assert console.errors == []


def test_saving_an_existing_connection_asks_before_replacing_it(kiok: Standalone, browser: Any) -> None:
    """Found by the second UI review: "editing" a connection's description (the only way: save
    its id again) replaced it whole, its type and secret values gone, without a word."""
    from playwright.sync_api import expect

    body = {"connectionId": "warehouse", "type": "postgres", "properties": {"password": "s26-secret"}}
    assert kiok.api("POST", "/api/v1/connections", json=body).status_code == 201
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/connections")
    form = page.get_by_test_id("create-connection")
    form.get_by_label("Id").fill("warehouse")
    form.get_by_label("Description").fill("the warehouse")
    form.get_by_role("button", name="Save connection").click()
    expect(form.get_by_role("alert")).to_contain_text("connection warehouse exists")
    stored = kiok.api("GET", "/api/v1/connections/warehouse").json()
    assert (stored["type"], list(stored["properties"])) == ("postgres", ["password"]), stored
    form.get_by_label("Replace an existing connection").check()
    form.get_by_role("button", name="Save connection").click()
    expect(page.get_by_role("status")).to_have_text("Connection warehouse saved.")
    assert kiok.api("GET", "/api/v1/connections/warehouse").json()["description"] == "the warehouse"
    context.close()
    assert console.errors == []


def test_kms_number_headers_are_right_aligned(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    context, page, console = signed_in(browser, kiok, "/settings/kms")
    kms = page.get_by_test_id("kms")
    for header in ("Current version", "Versions kept"):
        expect(kms.get_by_role("columnheader", name=header)).to_have_css("text-align", "right")
    context.close()
    assert console.errors == []


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


def test_audit_log_shows_the_detail_of_every_record(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    assert kiok.api("POST", "/api/v1/dags/quick/pause").is_success
    assert kiok.api("POST", "/api/v1/dags/quick/unpause").is_success
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/audit?action=dags%3APause")
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows.filter(has_text="unpaused")).to_have_count(1)
    expect(rows.get_by_test_id("audit-detail").filter(has_text=re.compile("^paused$"))).to_have_count(1)
    page.screenshot(path=str(shots / "s23-audit-detail.png"))
    context.close()
    assert console.errors == []


def test_form_labels_are_level_and_placeholders_look_like_placeholders(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = signed_in(browser, kiok, "/settings/users")
    for path, form_id in (
        ("/settings/users", "create-user"),
        ("/settings/groups", "create-group"),
        ("/settings/audit", "audit-filters"),
    ):
        page.goto(kiok.url + path)
        form = page.get_by_test_id(form_id)
        expect(form.locator("select").first).to_be_visible()
        rows: dict[int, list[tuple[str, float]]] = {}
        for label, bottom, top in form.evaluate(LABEL_TOPS):
            rows.setdefault(bottom, []).append((label, top))
        for labels in rows.values():
            tops = [top for _, top in labels]
            assert max(tops) - min(tops) <= 1, (path, labels)
    filters = page.get_by_test_id("audit-filters")
    actor = filters.get_by_label("Actor")
    placeholder = actor.evaluate("(el) => getComputedStyle(el, '::placeholder').fontWeight")
    assert placeholder == "400"
    colours = actor.evaluate(
        "(el) => [getComputedStyle(el, '::placeholder').color, getComputedStyle(el).color]"
    )
    assert colours[0] != colours[1], colours  # not the colour typed text has
    filters.screenshot(path=str(shots / "s22b-audit-filters.png"))
    context.close()
    assert console.errors == []


def test_ids_in_tables_stay_whole_on_a_phone(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    conn = {"connectionId": "warehouse-db", "type": "postgres", "properties": {"host": "db"}}
    assert kiok.api("POST", "/api/v1/connections", json=conn).status_code == 201
    key = kiok.api("POST", "/api/v1/iam/access-keys", json={"user": "alice"})
    assert key.status_code == 201, key.text
    kiok.wait_for(lambda: kiok.api("GET", "/api/v1/cluster").json()["workers"], 30, "the worker")
    context, page, console = signed_in(browser, kiok, "/settings/users", viewport=PHONE)
    tables = {
        "users": "/settings/users",
        "kms": "/settings/kms",
        "audit": "/settings/audit",
        "access-keys": "/settings/access-keys",
        "connections": "/settings/connections",
        "workers": "/cluster",
    }
    seen: set[str] = set()
    for name, path in tables.items():
        page.goto(kiok.url + path)
        expect(page.get_by_test_id(name).locator("tbody tr").first).to_be_visible()
        broken = [(text, lines) for text, lines in page.evaluate(ID_LINES) if lines > 1]
        assert broken == [], f"{path}: ids broken over lines: {broken}"
        seen.update(text for text, _ in page.evaluate(ID_LINES))
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        page.screenshot(path=str(shots / f"s22b-phone-{name}.png"), full_page=True)
    for text in ("admin", "alice", "metadata-encryption", "auth:Login", "127.0.0.1", "warehouse-db"):
        assert text in seen, text
    context.close()
    assert console.errors == []


# Last: the restore takes the master back to its backup and ends every session.
def test_backup_and_restore_with_the_maintenance_banner(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    assert kiok.api("POST", "/api/v1/iam/groups", json={"group": "before-backup"}).status_code == 201
    context, page, console = admin_page(browser, kiok, "/settings/backups")
    expect(page.get_by_text("No backups yet.")).to_be_visible()
    schedule = page.get_by_test_id("backup-schedule")
    schedule.get_by_label("Cron (5 fields, UTC)").fill("every night")
    schedule.get_by_role("button", name="Save schedule").click()
    expect(schedule.get_by_test_id("cron-error")).to_contain_text("cron")
    expect(schedule.get_by_label("Cron (5 fields, UTC)")).to_have_attribute("aria-invalid", "true")
    console.take("status of 400")
    schedule.get_by_label("Cron (5 fields, UTC)").fill("0 3 * * *")
    schedule.get_by_role("button", name="Save schedule").click()
    expect(schedule.get_by_test_id("schedule-now")).to_contain_text("at 03:00 every day, UTC")
    assert kiok.api("GET", "/api/v1/admin/backup/cron").json()["cron"] == "0 3 * * *"

    page.get_by_role("button", name="Back up now").click()
    table = page.get_by_test_id("backups")
    expect(table.locator("tbody tr")).to_have_count(1)
    backups = kiok.api("GET", "/api/v1/admin/backups").json()["backups"]
    assert len(backups) == 1
    backup_id = backups[0]["id"]
    expect(table.locator(f"tr[data-backup='{backup_id}']")).to_contain_text("full")
    expect(page.get_by_role("status").filter(has_text=f"Backup {backup_id} stored")).to_be_visible()
    page.screenshot(path=str(shots / "settings-backups.png"))
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(shots / "settings-backups-dark.png"))
    page.emulate_media(color_scheme="light")

    # A manifest planted in the target (a real one's copy, newer, its MAC forged) is named
    # apart as not this cluster's, with nothing to restore it by.
    target = Path(kiok.extra_env["KIOK_BACKUP_DIR"])
    planted = "29990101T000000000Z-abcdef"
    body = json.loads((target / backup_id / "manifest.json").read_bytes())
    body.update(id=planted, createdMs=32_472_144_000_000, mac="0" * 64)
    (target / planted).mkdir()
    (target / planted / "manifest.json").write_text(json.dumps(body))
    page.reload()
    rejected = page.get_by_test_id("rejected-backups")
    expect(rejected).to_contain_text(planted)
    expect(rejected).to_contain_text("Not backups of this cluster")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name=f"Restore {planted}")).to_have_count(0)
    page.screenshot(path=str(shots / "settings-backups-rejected.png"), full_page=True)
    shutil.rmtree(target / planted)

    # Maintenance mode: entered on the cluster page, its banner is on the settings pages too.
    page.get_by_label("Main").get_by_role("link", name="Cluster").click()
    page.get_by_role("button", name="Enter maintenance").click()
    page.get_by_role("button", name="Yes, enter").click()
    expect(page.get_by_test_id("maintenance-banner")).to_be_visible()
    page.get_by_label("Main").get_by_role("link", name="Settings").click()
    page.get_by_label("Settings").get_by_role("link", name="Backup & Restore").click()
    expect(page.get_by_test_id("maintenance-banner")).to_be_visible()
    page.get_by_test_id("maintenance-banner").get_by_role("link", name="Cluster").click()
    page.get_by_role("button", name="Leave maintenance").click()
    page.get_by_role("button", name="Yes, leave").click()
    expect(page.get_by_test_id("maintenance-banner")).to_have_count(0)
    page.get_by_label("Main").get_by_role("link", name="Settings").click()
    page.get_by_label("Settings").get_by_role("link", name="Backup & Restore").click()
    expect(page.get_by_test_id("maintenance-banner")).to_have_count(0)

    # Restore: a group made after the backup is gone afterwards; the id must be typed first.
    assert kiok.api("POST", "/api/v1/iam/groups", json={"group": "after-backup"}).status_code == 201
    page.get_by_role("button", name=f"Restore {backup_id}").click()
    dialog = page.get_by_test_id("restore-dialog")
    restore = dialog.get_by_role("button", name="Restore", exact=True)
    expect(restore).to_be_disabled()
    dialog.get_by_label("Type the backup id to confirm").fill(backup_id + "x")
    expect(restore).to_be_disabled()
    dialog.get_by_label("Type the backup id to confirm").fill(backup_id)
    page.screenshot(path=str(shots / "settings-restore.png"))
    restore.click()
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(kiok.url + "/settings/backups")
    expect(page.get_by_test_id("last-restore")).to_contain_text(f"Last restore: backup {backup_id}")
    expect(page.get_by_test_id("last-restore")).to_contain_text("by admin")
    kiok._token = None  # the restore ended every session from before it, this test's too
    groups = [g["group"] for g in kiok.api("GET", "/api/v1/iam/groups").json()["groups"]]
    assert "before-backup" in groups and "after-backup" not in groups
    context.close()
    assert console.errors == []

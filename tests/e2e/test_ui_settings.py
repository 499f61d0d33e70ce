"""The settings pages in a real browser against a real ``kiok standalone`` (with
``kiok.backup.dir`` set): groups (create, add and remove a member, attach and detach a
policy); the policy editor (a JSON syntax error marked at its line, the master's 400 shown
inline, create and edit); an access key whose secret is shown once and works against the API;
changing one's own password (a wrong current one refused inline) and logging in with the new
one; the audit log filtered, with the filters in the URL; Backup & Restore (an invalid cron
refused inline, a schedule in words, Back up now, restore confirmed by typing the id); and the
maintenance banner on the settings pages while maintenance mode is on."""

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


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    root = tmp_path_factory.mktemp("ui-settings")
    node = Standalone(root / "kiok", {"KIOK_BACKUP_DIR": str(root / "backups")})
    node.start()
    yield node
    node.stop()


def admin_page(browser: Any, kiok: Standalone, start: str, **options: Any) -> tuple[Any, Any, Any]:
    context, page, console, _ = open_page(browser, kiok, "admin", ADMIN_PASSWORD, start, **options)
    return context, page, console


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

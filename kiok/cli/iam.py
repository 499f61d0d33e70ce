"""``kiok iam``: users, groups, policies and access keys (``/api/v1/iam``).

Lists of names are given as one comma-separated option (``--groups a,b``; ``--groups ''``
empties the list) and replace the stored list; an option left out leaves it unchanged, as
the API does. Passwords are asked for at a hidden prompt unless given. An access key's
secret is printed once, when it is created: the master never shows it again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from kiok.cli.client import CliError, segment
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import NONE, emit_json, emit_table, text


def names(value: str | None) -> list[str] | None:
    """``a, b`` as ``["a", "b"]``; ``""`` as ``[]``; None (option not given) as None."""
    if value is None:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


def joined(values: Any) -> str:
    return ",".join(str(v) for v in values) if isinstance(values, list) and values else NONE


@click.group()
def iam() -> None:
    """Manage users, groups, policies and access keys."""


# --- users ------------------------------------------------------------------------------------


@iam.group()
def users() -> None:
    """List, create, update and delete users."""


@users.command("list")
@json_option
@pass_cli
def list_users(cli: CliContext) -> None:
    """Table of USER, GROUPS, POLICIES, MUST CHANGE PASSWORD, CREATED."""
    answer = cli.client().get("/api/v1/iam/users")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("users", []) if isinstance(answer, dict) else []
    rows = [
        [
            text(u.get("user")),
            joined(u.get("groups")),
            joined(u.get("policies")),
            text(u.get("requirePasswordChange")),
            text(u.get("createdAt")),
        ]
        for u in items
    ]
    _table_or(["USER", "GROUPS", "POLICIES", "MUST CHANGE PASSWORD", "CREATED"], rows, "no users")


_groups_option = click.option("--groups", metavar="G1,G2", help="Its groups, comma-separated ('' for none).")
_policies_option = click.option(
    "--policies", metavar="P1,P2", help="Its own policies, comma-separated ('' for none)."
)


@users.command("create")
@click.argument("user", metavar="USER")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Its password (prompted for twice when omitted).",
)
@_groups_option
@_policies_option
@json_option
@pass_cli
def create_user(cli: CliContext, user: str, password: str, groups: str | None, policies: str | None) -> None:
    """Create USER (refused when it exists: use `update`)."""
    client = cli.client()
    listed = client.get("/api/v1/iam/users")
    if any(u.get("user") == user for u in listed.get("users", []) if isinstance(u, dict)):
        raise CliError(f"user {user!r} exists; use `kiok iam users update {user}`")
    _put_user(cli, user, password, groups, policies, "created")


@users.command("update")
@click.argument("user", metavar="USER")
@click.option(
    "--password",
    prompt=True,
    prompt_required=False,
    hide_input=True,
    confirmation_prompt=True,
    help="Set a new password (`--password` alone prompts for it).",
)
@_groups_option
@_policies_option
@json_option
@pass_cli
def update_user(
    cli: CliContext, user: str, password: str | None, groups: str | None, policies: str | None
) -> None:
    """Change USER's password, groups or policies; what is not given stays as it is."""
    if password is None and groups is None and policies is None:
        raise click.UsageError("nothing to change: give --password, --groups or --policies")
    _put_user(cli, user, password, groups, policies, "updated")


def _put_user(
    cli: CliContext, user: str, password: str | None, groups: str | None, policies: str | None, done: str
) -> None:
    body: dict[str, Any] = {"user": user}
    if password is not None:
        body["password"] = password
    if (g := names(groups)) is not None:
        body["groups"] = g
    if (p := names(policies)) is not None:
        body["policies"] = p
    answer = cli.client().post("/api/v1/iam/users", body)
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"{done} user {user}")


@users.command("delete")
@click.argument("user", metavar="USER")
@json_option
@pass_cli
def delete_user(cli: CliContext, user: str) -> None:
    """Delete USER and its access keys."""
    _delete(cli, f"/api/v1/iam/users/{segment(user)}", f"deleted user {user}")


# --- groups -----------------------------------------------------------------------------------


@iam.group()
def groups() -> None:
    """List, set and delete groups."""


@groups.command("list")
@json_option
@pass_cli
def list_groups(cli: CliContext) -> None:
    """Table of GROUP, POLICIES."""
    answer = cli.client().get("/api/v1/iam/groups")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("groups", []) if isinstance(answer, dict) else []
    rows = [[text(g.get("group")), joined(g.get("policies"))] for g in items]
    _table_or(["GROUP", "POLICIES"], rows, "no groups")


@groups.command("set")
@click.argument("group", metavar="GROUP")
@_policies_option
@json_option
@pass_cli
def set_group(cli: CliContext, group: str, policies: str | None) -> None:
    """Create GROUP, or set its policies."""
    body: dict[str, Any] = {"group": group}
    if (p := names(policies)) is not None:
        body["policies"] = p
    answer = cli.client().post("/api/v1/iam/groups", body)
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"set group {group} (policies: {joined(answer.get('policies'))})")


@groups.command("delete")
@click.argument("group", metavar="GROUP")
@json_option
@pass_cli
def delete_group(cli: CliContext, group: str) -> None:
    """Delete GROUP; its members leave it."""
    _delete(cli, f"/api/v1/iam/groups/{segment(group)}", f"deleted group {group}")


# --- policies ---------------------------------------------------------------------------------


@iam.group()
def policies() -> None:
    """List, show, set and delete policies."""


@policies.command("list")
@json_option
@pass_cli
def list_policies(cli: CliContext) -> None:
    """Table of POLICY, EFFECTS, ACTIONS, RESOURCES (from all its statements)."""
    answer = cli.client().get("/api/v1/iam/policies")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("policies", []) if isinstance(answer, dict) else []
    rows = [[text(p.get("policy")), *policy_summary(p.get("document"))] for p in items]
    _table_or(["POLICY", "EFFECTS", "ACTIONS", "RESOURCES"], rows, "no policies")


def policy_summary(document: Any) -> list[str]:
    """The distinct effects, actions and resources of a policy's statements, each joined."""
    effects: dict[str, None] = {}
    actions: dict[str, None] = {}
    resources: dict[str, None] = {}
    statements = document.get("Statement") if isinstance(document, dict) else None
    for st in statements if isinstance(statements, list) else []:
        if not isinstance(st, dict):
            continue
        effects[str(st.get("Effect"))] = None
        for field, into in (("Action", actions), ("Resource", resources)):
            value = st.get(field)
            for item in value if isinstance(value, list) else [value] if value else []:
                into[str(item)] = None
    return [",".join(found) or NONE for found in (effects, actions, resources)]


@policies.command("show")
@click.argument("policy", metavar="POLICY")
@json_option
@pass_cli
def show_policy(cli: CliContext, policy: str) -> None:
    """Print POLICY's document (JSON)."""
    answer = cli.client().get("/api/v1/iam/policies")
    items = answer.get("policies", []) if isinstance(answer, dict) else []
    found = next((p for p in items if isinstance(p, dict) and p.get("policy") == policy), None)
    if found is None:
        raise CliError(f"policy {policy!r} not found (or not readable by you)")
    emit_json(found if cli.as_json else found.get("document"))


@policies.command("set")
@click.argument("policy", metavar="POLICY")
@click.argument("document", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@json_option
@pass_cli
def set_policy(cli: CliContext, policy: str, document: str) -> None:
    """Create or replace POLICY with the document in FILE (JSON or YAML; `-` reads stdin)."""
    doc = read_document(document)
    answer = cli.client().post("/api/v1/iam/policies", {"policy": policy, "document": doc})
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"set policy {policy}")


def read_document(path: str) -> Any:
    """A policy document from a JSON or YAML file (``-``: stdin)."""
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise CliError(f"{path}: not UTF-8 text (byte {e.start})") from e
    try:
        return json.loads(raw)
    except ValueError:
        pass
    except RecursionError:
        raise CliError(f"{path}: nested too deeply") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise CliError(f"{path}: neither JSON nor YAML ({' '.join(str(e).split())})") from e
    except RecursionError:
        raise CliError(f"{path}: nested too deeply") from None


@policies.command("delete")
@click.argument("policy", metavar="POLICY")
@json_option
@pass_cli
def delete_policy(cli: CliContext, policy: str) -> None:
    """Delete POLICY; it is detached from every user and group."""
    _delete(cli, f"/api/v1/iam/policies/{segment(policy)}", f"deleted policy {policy}")


# --- access keys ------------------------------------------------------------------------------


@iam.group("access-keys")
def access_keys() -> None:
    """Create, list and delete access keys (KIOK_ACCESS_KEY=<id>:<secret> uses one)."""


@access_keys.command("list")
@click.option("--user", help="Only this user's keys (default: every user's you may list).")
@json_option
@pass_cli
def list_access_keys(cli: CliContext, user: str | None) -> None:
    """Table of ACCESS KEY, USER, CREATED (never secrets)."""
    answer = cli.client().get("/api/v1/iam/access-keys", params={"user": user} if user else None)
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("accessKeys", []) if isinstance(answer, dict) else []
    rows = [[text(a.get("accessKeyId")), text(a.get("user")), text(a.get("createdAt"))] for a in items]
    _table_or(["ACCESS KEY", "USER", "CREATED"], rows, "no access keys")


@access_keys.command("create")
@click.option("--user", help="Whose key (default: yours).")
@click.option(
    "--password",
    help="Your current password: a key of your own needs it (prompted for, on stderr, when "
    "omitted and there is no --user).",
)
@json_option
@pass_cli
def create_access_key(cli: CliContext, user: str | None, password: str | None) -> None:
    """Create an access key and print `<id>:<secret>` on stdout, alone, once: keep it now.

    `export KIOK_ACCESS_KEY=$(kiok iam access-keys create)` makes later commands use it.
    """
    if password is None and not user:
        # On stderr: stdout is the key alone, often captured by `$(...)`.
        password = click.prompt("Current password", hide_input=True, err=True)
    body = {"user": user} if user else {}
    if password is not None:
        body["password"] = password
    answer = cli.client().post("/api/v1/iam/access-keys", body)
    if cli.as_json:
        emit_json(answer)
        return
    key_id, secret = answer.get("accessKeyId"), answer.get("secretAccessKey")
    if not isinstance(key_id, str) or not isinstance(secret, str):
        raise CliError("the master's access-key answer carries no accessKeyId and secretAccessKey")
    click.echo(f"{key_id}:{secret}")
    click.echo(f"access key {key_id} for {answer.get('user')}; the secret is not shown again", err=True)


@access_keys.command("delete")
@click.argument("key_id", metavar="ACCESS_KEY_ID")
@json_option
@pass_cli
def delete_access_key(cli: CliContext, key_id: str) -> None:
    """Delete an access key."""
    _delete(cli, f"/api/v1/iam/access-keys/{segment(key_id)}", f"deleted access key {key_id}")


# --- shared -----------------------------------------------------------------------------------


def _delete(cli: CliContext, path: str, done: str) -> None:
    answer = cli.client().delete(path)
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(done)


def _table_or(headers: list[str], rows: list[list[str]], empty: str) -> None:
    if rows:
        emit_table(headers, rows)
    else:
        click.echo(empty)

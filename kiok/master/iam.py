"""Authorisation on the master: the principal's policies (its own and its groups') decide
each action on each resource, through ``kiok.security.policy`` (default deny, Deny wins)."""

from __future__ import annotations

from typing import Any

from kiok.errors import Forbidden
from kiok.master.auth import SERVICE_PRINCIPAL, Principal
from kiok.security.policy import is_allowed
from kiok.store.reader import StateReader


class Iam:
    def __init__(self, reader: StateReader) -> None:
        self._reader = reader

    def documents(self, principal: Principal) -> list[dict[str, Any]]:
        user = (self._reader.user(principal.user) or {}) if principal.user != SERVICE_PRINCIPAL else {}
        names = list(user.get("policies") or [])
        for group_name in principal.groups:
            group = self._reader.group(group_name)
            if group is not None:
                names += group["policies"]
        docs = []
        for name in dict.fromkeys(names):
            policy = self._reader.policy(name)
            if policy is not None:
                docs.append(policy["document"])
        return docs

    def authorize(self, principal: Principal, action: str, resource: str) -> None:
        if not is_allowed(self.documents(principal), action, resource):
            raise Forbidden(f"user {principal.user!r} may not {action} on {resource}")

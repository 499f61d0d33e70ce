"""Authorisation on the master: the principal's policies (its own and its groups') decide
each action on each resource, through ``kiok.security.policy`` (default deny, Deny wins).

Every user also holds an implicit policy allowing ``actions.SELF_SERVICE`` on its own
``iam/user/<name>`` (its access keys); its explicit Deny statements still win over it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kiok.errors import Forbidden
from kiok.master.auth import SERVICE_PRINCIPAL, Principal
from kiok.master.auth_cache import EpochCache, IamEpoch
from kiok.security import actions, resources
from kiok.security.policy import allowed_anywhere, allowed_under, is_allowed, resource_check
from kiok.store.reader import StateReader


class Grants:
    """One principal's policies, loaded once for a request that checks many resources
    (a filtered list, a user update touching several groups and policies)."""

    def __init__(self, principal: Principal, documents: Sequence[dict[str, Any]]) -> None:
        self.principal = principal
        self._documents = documents

    def allows(self, action: str, resource: str) -> bool:
        return is_allowed(self._documents, action, resource)

    def checker(self, action: str) -> Callable[[str], bool]:
        """``allows(action, …)`` for many resources: the policies are sifted once."""
        return resource_check(self._documents, action)

    def allows_under(self, action: str, prefix: str) -> bool:
        """Whether ``action`` may be allowed on some resource under ``prefix`` (denies not
        weighed): a no means a list there is empty without reading it."""
        return allowed_under(self._documents, action, prefix)

    def check(self, action: str, resource: str) -> None:
        """Forbidden naming the action and resource unless allowed."""
        if not self.allows(action, resource):
            raise Forbidden(f"user {self.principal.user!r} may not {action} on {resource}")

    def check_anywhere(self, action: str) -> None:
        """Forbidden unless ``action`` could be allowed on some resource (the gate of a list
        filtered with ``allows``, or of a route whose resource is in the body)."""
        if not allowed_anywhere(self._documents, action):
            raise Forbidden(f"user {self.principal.user!r} may not {action} on any resource")


class Iam:
    def __init__(self, reader: StateReader, epoch: IamEpoch | None = None) -> None:
        """``epoch``: the master's IAM epoch; with it, a principal's documents are kept until
        the next IAM change (``kiok.master.auth_cache``)."""
        self._reader = reader
        self._documents: EpochCache[Principal, tuple[dict[str, Any], ...]] | None = (
            None if epoch is None else EpochCache(epoch)
        )

    def documents(self, principal: Principal) -> Sequence[dict[str, Any]]:
        """The principal's policy documents (its own, its groups', the implicit self-service
        one). Shared between requests: read them, never change them."""
        if self._documents is None:
            return self._read_documents(principal)
        return self._documents.resolve(principal, lambda: self._read_documents(principal))

    def _read_documents(self, principal: Principal) -> tuple[dict[str, Any], ...]:
        if principal.user == SERVICE_PRINCIPAL:
            user: dict[str, Any] = {}
            docs = []
        else:
            user = self._reader.user(principal.user) or {}
            docs = [_self_service(principal.user)]
        names = list(user.get("policies") or [])
        for group_name in principal.groups:
            group = self._reader.group(group_name)
            if group is not None:
                names += group["policies"]
        for name in dict.fromkeys(names):
            policy = self._reader.policy(name)
            if policy is not None:
                docs.append(policy["document"])
        return tuple(docs)

    def grants(self, principal: Principal) -> Grants:
        return Grants(principal, self.documents(principal))

    def authorize(self, principal: Principal, action: str, resource: str) -> None:
        self.grants(principal).check(action, resource)


def _self_service(user: str) -> dict[str, Any]:
    return {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": list(actions.SELF_SERVICE),
                "Resource": [resources.literal(resources.user(user))],
            }
        ]
    }

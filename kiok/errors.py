"""The one exception tree of kiok.

Every error that can reach a user or cross the wire is a ``KiokError`` with a stable
machine-readable ``code``; HTTP status mapping lives only in ``kiok.master.http_errors``
and nothing ever matches an error by its message text.

    KiokError
    ├── InvalidInput              bad request body, query or argument          (code: invalid_input)
    │   ├── DagValidationError    a DAG that cannot be registered; names field (code: invalid_dag)
    │   └── PayloadTooLarge       body over kiok.admin.http.max.content.size,  (code: payload_too_large)
    │                             or a write over one replicated-log entry
    ├── NotFound                  unknown DAG, run, task, user                 (code: not_found)
    ├── Conflict                  valid request, wrong moment                  (code: conflict)
    │   ├── DagPaused             trigger of a paused DAG                      (code: dag_paused)
    │   └── IllegalTransition     a state change the transition table forbids  (code: illegal_transition)
    ├── AuthError
    │   ├── Unauthenticated       no or bad credentials                        (code: unauthenticated)
    │   ├── PasswordChangeRequired token may only change its password         (code: password_change_required)
    │   └── Forbidden             authenticated, not allowed                   (code: forbidden)
    ├── RateLimited               too many attempts                            (code: rate_limited)
    ├── Overloaded                too much work waiting: shed, try again later (code: overloaded)
    ├── NotReady                  cluster gate closed                          (code: not_ready)
    ├── StoreUnavailable          a store cannot write (disk full, read-only,  (code: store_unavailable)
    │                             data directory gone): the process stops
    ├── MaintenanceMode           maintenance mode is on: no new runs          (code: maintenance_mode)
    ├── NotLeader                 write reached a non-leader (leader_hint)     (code: not_leader)
    ├── ProtocolError             bad frame on the internal protocol           (code: protocol_error)
    └── TaskError                 a task body failed (kept in the task record) (code: task_error)
"""

from __future__ import annotations


class KiokError(Exception):
    """Base of every kiok error; ``code`` is the stable identifier clients branch on."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(KiokError):
    code = "invalid_input"


class DagValidationError(InvalidInput):
    """A DAG was refused; ``field`` names the offending part (``tasks[2].requires``)."""

    code = "invalid_dag"

    def __init__(self, message: str, field: str | None = None, line: int | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        #: 1-based line in the submitted document, when known (a syntax error, or located
        #: from ``field`` by ``kiok.dag.locate``).
        self.line = line
        self.detail = message


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class NotFound(KiokError):
    code = "not_found"


class Conflict(KiokError):
    code = "conflict"


class DagPaused(Conflict):
    code = "dag_paused"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class AuthError(KiokError):
    code = "auth_error"


class Unauthenticated(AuthError):
    code = "unauthenticated"


class PasswordChangeRequired(AuthError):
    code = "password_change_required"


class Forbidden(AuthError):
    code = "forbidden"


class RateLimited(KiokError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(KiokError):
    """Refused at once because too much of the work is already waiting (the password-hash
    pool's queue is full): nothing was done, and the same request may succeed after
    ``retry_after_s`` seconds (503 with ``Retry-After``)."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(KiokError):
    code = "not_ready"


class StoreUnavailable(KiokError):
    """The state store or the job-log store cannot write (RocksDB's I/O error: the disk is
    full, the file system read-only, the data directory removed or replaced). Nothing of the
    write was made, none will be made by this process: it stops, and a restart (once the
    cause is gone) continues from what was written before."""

    code = "store_unavailable"


class MaintenanceMode(KiokError):
    """Maintenance mode is on: manual triggers are refused until it ends (503 with
    ``Retry-After``; the HTTP layer fills in ``retry_after_s`` from its setting)."""

    code = "maintenance_mode"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotLeader(KiokError):
    """A write that did not commit. ``outcome_unknown``: it may commit all the same (the
    leader changed while it was under way, and the next leader may hold it), so it must not
    be sent again blindly; otherwise it certainly did not take effect, and may be retried."""

    code = "not_leader"

    def __init__(self, message: str, leader_hint: str | None = None, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.leader_hint = leader_hint
        self.outcome_unknown = outcome_unknown

    @classmethod
    def leader_changed(cls) -> NotLeader:
        return cls(
            "the leader changed before the write committed: it may still take effect, "
            "so check before repeating it",
            outcome_unknown=True,
        )


class ProtocolError(KiokError):
    code = "protocol_error"


class TaskError(KiokError):
    code = "task_error"

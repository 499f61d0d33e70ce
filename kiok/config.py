"""One settings object for every kiok process.

Every key is a dotted name with a type, a default and a line of documentation (the table
below is the single source; ``docs/configuration.md`` is generated from it and a test keeps
the two in step). Precedence: explicit overrides (command-line flags) > environment
(``KIOK_`` + upper-case, dots to underscores: ``kiok.worker.task.slots`` ->
``KIOK_WORKER_TASK_SLOTS``) > config file (``--config kiok.yaml``, YAML mapping of dotted
keys or nested sections) > default. Only the composition roots read the environment.

An unknown key in a config file is refused (the file is kiok's alone: a typo there is a
mistake), and so is a key given twice there (naming both lines); an unknown ``KIOK_``
variable only warns (the environment is shared with other programs), both naming the
closest known name. A number out of its range is refused too (a port over 65535, a negative
count, no task slot). Each value remembers where it came from, and
``secret`` keys are shown redacted (``Settings.explain``, ``kiok config show``).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.nodes import MappingNode, ScalarNode

from kiok.errors import InvalidInput


@dataclass(frozen=True)
class Key:
    name: str
    type: type
    default: Any
    doc: str
    #: Shown redacted by ``Settings.explain`` (``kiok config show``).
    secret: bool = False
    #: The least a number may be: 1 where 0 would leave nothing to work with (no slot, no
    #: time, no byte). Ports are at most 65535, other numbers 2^53.
    at_least: int = 0
    #: The most a number may be, where more would exhaust the machine (processes, threads):
    #: None for the general bound (65535 for a port, else 2^53).
    at_most: int | None = None
    #: The only values a string may take (compared without case for the log level).
    choices: tuple[str, ...] = ()
    #: An id (of a master or worker): letters, digits, ``_.-``, starting with a letter or
    #: digit, at most 128 characters; empty only where the default is empty (generated).
    is_id: bool = False
    #: A string that may not be empty (nor blank).
    required: bool = False

    @property
    def env(self) -> str:
        return self.name.upper().replace(".", "_")


MiB = 1024 * 1024

KEYS: tuple[Key, ...] = (
    Key(
        "kiok.base.data.dir",
        str,
        "./data",
        "Directory holding every store of this process (not empty).",
        required=True,
    ),
    Key(
        "kiok.master.host",
        str,
        "127.0.0.1",
        "Address the admin HTTP, internal and Raft ports bind to (0.0.0.0 to expose): an IP "
        "address or host name, empty refused; a loopback address with a peer in "
        "kiok.master.peers on another host is refused at start.",
    ),
    Key(
        "kiok.master.advertise.host",
        str,
        "",
        "Host the other masters and workers reach this master at; empty: kiok.master.host, or the "
        "host name when that is 0.0.0.0.",
    ),
    Key("kiok.master.admin.port", int, 8080, "Admin HTTP port: REST API, UI, health probes.", at_least=1),
    Key(
        "kiok.master.internal.port", int, 19999, "Internal protocol port (workers connect here).", at_least=1
    ),
    Key(
        "kiok.master.id",
        str,
        "m1",
        "This master's id, one of those in kiok.master.peers: letters, digits and _.- (starting "
        "with a letter or digit), at most 128 characters.",
        is_id=True,
    ),
    Key(
        "kiok.master.peers",
        str,
        "",
        "Every master's Raft address, this one included: id=host:port,... (3 or 5 masters). "
        "Empty: a single master on the local command log.",
    ),
    Key(
        "kiok.master.leader.deference.window.ms",
        int,
        3000,
        "After a restart, masters that were not the last leader wait this long before campaigning "
        "(sticky leadership); 0 turns it off.",
    ),
    Key(
        "kiok.admin.forward.timeout.ms",
        int,
        30000,
        "Deadline for a write a follower forwards to the leader.",
        at_least=1,
    ),
    Key(
        "kiok.raft.election.timeout.min.ms",
        int,
        400,
        "Lower bound of the randomised Raft election timeout; more than 150 (three Raft "
        "heartbeats of 50 ms) and less than kiok.raft.election.timeout.max.ms.",
        at_least=151,
    ),
    Key(
        "kiok.raft.election.timeout.max.ms",
        int,
        1400,
        "Upper bound of the randomised Raft election timeout; more than "
        "kiok.raft.election.timeout.min.ms (so at least 152).",
        at_least=152,
    ),
    Key(
        "kiok.raft.compaction.min.entries",
        int,
        5000,
        "Raft log entries after which a snapshot of the store compacts the log.",
    ),
    Key(
        "kiok.raft.snapshot.write.pause.ms",
        int,
        0,
        "Testing aid, leave 0: each snapshot write pauses this long before writing the file, "
        "so a test can check that the cluster keeps its leader and keeps committing meanwhile.",
    ),
    Key(
        "kiok.worker.host",
        str,
        "127.0.0.1",
        "Address the worker status HTTP port binds to: an IP address or host name, empty refused.",
    ),
    Key(
        "kiok.worker.status.port",
        int,
        19998,
        "Worker status HTTP port: /health, /ready, /status, /cluster/health; POST /drain and "
        "POST /undrain need the worker's status token (Authorization: Bearer, from "
        "<data>/status-token, which `kiok workers drain` reads).",
        at_least=1,
    ),
    Key(
        "kiok.worker.id",
        str,
        "",
        "Worker id: letters, digits and _.- (starting with a letter or digit), at most 128 "
        "characters; empty: a generated id kept in <data>/worker-id.",
        is_id=True,
    ),
    Key("kiok.worker.labels", str, "", "Comma-separated labels this worker offers for DAG routing."),
    Key(
        "kiok.worker.task.slots",
        int,
        8,
        "Task bodies one worker runs at once (1 to 4096).",
        at_least=1,
        at_most=4096,
    ),
    Key(
        "kiok.worker.work.dir",
        str,
        "",
        "Where task attempts get their working directories; empty: <data>/work, or with task "
        "isolation a new <temp dir>/kiok-work-<worker id>-<random>, removed at shutdown. With "
        "isolation it must belong to kiok (mode 0711 is set) and be reachable by the task "
        "user; each attempt's directory belongs to its attempt user while it runs.",
    ),
    Key(
        "kiok.worker.task.isolation",
        str,
        "auto",
        "How tasks are kept from kiok's files, secrets and processes: auto (as root: tasks run as "
        "kiok.worker.task.user in a private pid and mount namespace when unshare works, else as "
        "that user only; not root: none, with a warning), user (like auto, but refuse to start "
        "when not root), none (tasks run as kiok's own user and can read all it holds). The "
        "outcome shows as taskIsolation in /status and /cluster/health.",
        choices=("auto", "user", "none"),
    ),
    Key(
        "kiok.worker.task.user",
        str,
        "kiok-task",
        "Unprivileged user the task spawners (and python templates) of isolated tasks run as, "
        "and the group tasks run in; created at start (system user, no home, no login shell) "
        "when missing. Each attempt runs as a user of its own: see kiok.worker.task.users.",
    ),
    Key(
        "kiok.worker.task.users",
        int,
        0,
        "Attempt users of an isolated worker, <kiok.worker.task.user>-<n> in that user's "
        "group, created at start when missing: each attempt runs as one no other running attempt "
        "has, so attempts cannot read each other's working directories or /proc entries, nor "
        "signal each other. Claimed host-wide (/run/kiok/attempt-users): a worker takes the "
        "lowest numbers no other worker on the host holds. 0: as many as kiok.worker.task.slots; "
        "fewer makes attempts wait for a free one (at most 4096).",
        at_least=0,
        at_most=4096,
    ),
    Key(
        "kiok.worker.shutdown.drain.timeout.seconds",
        int,
        60,
        "On SIGTERM, how long running runs may finish before they are given back.",
    ),
    Key(
        "kiok.worker.task.kill.grace.ms",
        int,
        5000,
        "Grace between SIGTERM and SIGKILL when a task is stopped.",
    ),
    Key(
        "kiok.worker.spawners",
        int,
        2,
        "Task spawner processes per worker (they start, watch and stop task processes). Starting "
        "a process blocks its spawner until the process has exec'd, so more spawners start more "
        "tasks at once (1 to 64).",
        at_least=1,
        at_most=64,
    ),
    Key(
        "kiok.worker.report.linger.ms",
        int,
        10,
        "How long a driver collects task state changes before sending them as one report: "
        "fewer, larger reports (and on a cluster worker fewer outbox fsyncs), and a task that "
        "ends within it is reported once; the masters see a change at most this much later "
        "(a run's end at once). 0 sends at the end of each event-loop turn.",
    ),
    Key(
        "kiok.worker.masters",
        str,
        "127.0.0.1:19999",
        "Internal addresses of the masters (host:port, comma-separated).",
    ),
    Key(
        "kiok.worker.join.token",
        str,
        "",
        "One-time join token (first start only; exchanged for a credential).",
        secret=True,
    ),
    Key(
        "kiok.worker.credential.file",
        str,
        "",
        "Where the worker keeps its credential (mode 0600); empty: <data>/worker-credential.",
    ),
    Key(
        "kiok.worker.heartbeat.interval.ms",
        int,
        1000,
        "How often a worker tells the master it is alive.",
        at_least=1,
    ),
    Key(
        "kiok.worker.refused.retry.ms",
        int,
        15000,
        "How long a worker a master refused (its credential and join token, a version, too many "
        "failures) waits before it tries again (at least 100).",
        at_least=100,
    ),
    Key(
        "kiok.worker.heartbeat.timeout.ms",
        int,
        5000,
        "Silence after which a worker counts as lost and its runs are reassigned.",
        at_least=1,
    ),
    Key(
        "kiok.internal.connect.timeout.ms",
        int,
        10000,
        "Deadline to connect and complete the hello on the internal protocol.",
        at_least=1,
    ),
    Key(
        "kiok.internal.io.timeout.ms",
        int,
        10000,
        "Deadline for a peer to take one frame on the internal protocol.",
        at_least=1,
    ),
    Key(
        "kiok.internal.max.frame.bytes",
        int,
        16 * MiB,
        "Largest frame accepted on the internal protocol.",
        at_least=1,
    ),
    Key(
        "kiok.python.path",
        str,
        "",
        "Interpreter for python tasks; empty: the interpreter running kiok (with task isolation, "
        "when the task user cannot run that one, the first python3 in /usr/local/bin, /usr/bin, "
        "/bin that it can).",
    ),
    Key(
        "kiok.worker.python.preload",
        str,
        "",
        "Modules imported once into each spawner's python template (comma-separated, e.g. "
        "pandas,numpy), so python tasks forked from it do not import them again; one that cannot "
        "be imported is said at start in one line.",
    ),
    Key(
        "kiok.worker.python.template.max.tasks",
        int,
        1000,
        "Python attempts one template forks before it is replaced by a fresh one (it is also "
        "replaced when it dies or kiok.worker.python.preload changes); 0: no template, every "
        "python task starts a new interpreter.",
    ),
    Key("kiok.task.http.connect.timeout.ms", int, 10000, "Connect timeout of http tasks.", at_least=1),
    Key("kiok.scheduler.tick.interval.ms", int, 1000, "Cron scheduler tick.", at_least=1),
    Key("kiok.scheduler.catchup.max.runs", int, 24, "Most runs one catch-up creates per DAG (newest kept)."),
    Key("kiok.scheduler.backfill.max.runs", int, 1000, "Most runs one backfill request may create."),
    Key(
        "kiok.scheduler.max.pending.runs.per.dag",
        int,
        2000,
        "Runs of one DAG that may wait to start (PENDING) at once: a trigger or backfill that would "
        "queue more gets 409, so that whoever may trigger a DAG cannot queue runs without end; its "
        "schedule creates no more runs until some start (the intervals then follow catch-up rules).",
        at_least=1,
    ),
    Key(
        "kiok.dag.versions.keep",
        int,
        50,
        "Registered versions kept per DAG (older ones are dropped).",
        at_least=1,
    ),
    Key(
        "kiok.scheduler.max.global.concurrency",
        int,
        100,
        "Task bodies running at once across the cluster.",
        at_least=1,
    ),
    Key(
        "kiok.scheduler.default.task.timeout.ms",
        int,
        1_800_000,
        "Task timeout when neither task nor DAG sets one.",
        at_least=1,
    ),
    Key(
        "kiok.scheduler.retry.max.delay.ms",
        int,
        3_600_000,
        "Cap on one retry delay after exponential backoff.",
    ),
    Key(
        "kiok.cluster.maintenance.retry.after.seconds",
        int,
        30,
        "Retry-After of a manual trigger refused (503) while maintenance mode is on.",
    ),
    Key(
        "kiok.retention.runs.days",
        float,
        0.0,
        "Finished runs (task records and job logs with them) older than this many days are "
        "deleted; a DAG's own retention replaces it; 0 keeps them forever. Fractions allowed.",
    ),
    Key(
        "kiok.retention.logs.days",
        float,
        0.0,
        "Job logs of finished runs older than this many days are deleted, the run records kept "
        "(only when shorter than the run retention); 0 keeps them as long as their run.",
    ),
    Key(
        "kiok.retention.audit.days",
        float,
        0.0,
        "Audit records older than this many days are deleted, the oldest first, by the same "
        "sweep; 0 keeps them forever (the default: how long to keep them is often a policy "
        "of its own). Fractions allowed.",
    ),
    Key(
        "kiok.retention.sweep.interval.ms",
        int,
        60_000,
        "How often the leader looks for runs and logs past their retention.",
        at_least=1,
    ),
    Key(
        "kiok.retention.sweep.batch.runs",
        int,
        100,
        "Runs deleted per command by the retention sweep (small batches keep the API responsive).",
        at_least=1,
    ),
    Key(
        "kiok.notify.max.attempts",
        int,
        5,
        "Attempts to deliver one notification (webhook or email) before it is given up.",
        at_least=1,
    ),
    Key(
        "kiok.notify.retry.initial.ms",
        int,
        2000,
        "Delay after a notification's first failed attempt; doubled after each further one.",
        at_least=1,
    ),
    Key(
        "kiok.notify.retry.max.ms",
        int,
        300_000,
        "Cap on the delay between two attempts of one notification.",
        at_least=1,
    ),
    Key(
        "kiok.notify.timeout.ms",
        int,
        10_000,
        "Deadline of one notification attempt (HTTP request or SMTP conversation).",
        at_least=1,
    ),
    Key(
        "kiok.notify.check.interval.ms",
        int,
        1000,
        "How often the leader looks for runs past their sla and for notifications due.",
        at_least=1,
    ),
    Key(
        "kiok.notify.link.base.url",
        str,
        "",
        "Base of the run link in notifications (<base>/runs/<run id>); empty: this master's admin URL.",
    ),
    Key(
        "kiok.notify.webhook.blocked.networks",
        str,
        "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128",
        "Networks (CIDRs, comma separated) no webhook is sent to: a webhook whose host is or "
        "resolves to an address in one (IPv4-mapped IPv6 included) is refused, not retried. "
        "Default: loopback, link-local (cloud metadata), unspecified; add private ranges "
        "(10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) to keep webhooks on the internet; "
        "empty: none.",
    ),
    Key(
        "kiok.joblog.max.bytes.per.task",
        int,
        64 * MiB,
        "Stored log bytes per task attempt; output past it is dropped with a marker.",
    ),
    Key(
        "kiok.joblog.worker.batch.bytes",
        int,
        65536,
        "A worker ships a task's output once this many bytes are buffered...",
        at_least=1,
    ),
    Key("kiok.joblog.worker.batch.interval.ms", int, 2000, "...or this long after the first unshipped byte."),
    Key(
        "kiok.joblog.s3.endpoint",
        str,
        "",
        "S3 endpoint URL job logs are archived to (e.g. http://127.0.0.1:9000); empty: AWS's default.",
    ),
    Key("kiok.joblog.s3.region", str, "", "Region of the job-log bucket; empty: us-east-1."),
    Key(
        "kiok.joblog.s3.bucket",
        str,
        "",
        "Bucket job logs are archived to; empty (and no kiok.joblog.s3.connection): logs stay in the "
        "local store only.",
    ),
    Key("kiok.joblog.s3.prefix", str, "joblogs", "Key prefix of the archived job logs in the bucket."),
    Key(
        "kiok.joblog.s3.orphan.grace.ms",
        int,
        3_600_000,
        "After a restore, archived logs of runs the restored state does not have are deleted once "
        "their newest object is this old; the leader looks this often until none is left.",
        at_least=1,
    ),
    Key(
        "kiok.joblog.s3.path.style",
        bool,
        True,
        "Path-style addressing (http://host/bucket/key), as most S3-compatible servers want; no: "
        "virtual-hosted style.",
    ),
    Key(
        "kiok.joblog.s3.access.key",
        str,
        "",
        "Access key id for the job-log bucket; empty: boto3's chain "
        "(tasks never inherit `AWS_` variables: docs/dags.md).",
    ),
    Key("kiok.joblog.s3.secret.key", str, "", "Secret access key for the job-log bucket.", secret=True),
    Key(
        "kiok.joblog.s3.connection",
        str,
        "",
        "Name of a stored connection of type s3 whose properties (endpoint, region, bucket, prefix, "
        "pathStyle, accessKey, secretKey) take precedence over the kiok.joblog.s3.* settings.",
    ),
    Key(
        "kiok.joblog.flush.interval.ms",
        int,
        10_000,
        "How often the leader copies new job-log bytes to S3 (and at each task's end), then drops "
        "them from the local store.",
        at_least=1,
    ),
    Key(
        "kiok.s3.multipart.part.size.bytes",
        int,
        8 * MiB,
        "S3 objects larger than this are uploaded in parts of this size (at least 5 MiB, S3's floor).",
        at_least=5 * MiB,
    ),
    Key(
        "kiok.s3.list.max.keys",
        int,
        2_000_000,
        "An S3 listing (job-log retention and orphan sweeps, backups list, prune) that holds more "
        "keys than this fails instead of filling memory (a broken or hostile server can list "
        "forever); raise it if a prefix really holds more objects.",
        at_least=1,
    ),
    Key(
        "kiok.s3.request.timeout.ms",
        int,
        300_000,
        "Whole-request deadline of one S3 call (job-log archival and reads, backups, restores; a "
        "listing: each page), "
        "retries and the body's transfer included: a server that never answers or trickles bytes "
        "fails the call after this long (object_store_unavailable) instead of holding it; raise it "
        "to move big backup files over a slow link.",
        at_least=1,
    ),
    Key(
        "kiok.backup.dir",
        str,
        "",
        "Directory backups are written to (small installs; with several masters it must be shared); "
        "empty: the S3 target (kiok.backup.s3.*) is used.",
    ),
    Key(
        "kiok.backup.keep",
        int,
        0,
        "After each backup (scheduled or manual), keep the newest N backups and every older one "
        "they still use (an incremental backup points to objects earlier ones hold); delete the "
        "rest. 0: keep every backup.",
    ),
    Key(
        "kiok.backup.restore.pause.ms",
        int,
        0,
        "Testing aid, leave 0: a restore pauses this long (blocking the master) after replacing "
        "each store, so a test can kill the master between two stores and check the restore "
        "is finished at the next start.",
    ),
    Key(
        "kiok.backup.s3.endpoint",
        str,
        "",
        "S3 endpoint URL of the backup target; empty: kiok.joblog.s3.endpoint.",
    ),
    Key("kiok.backup.s3.region", str, "", "Region of the backup bucket; empty: kiok.joblog.s3.region."),
    Key(
        "kiok.backup.s3.bucket",
        str,
        "",
        "Bucket backups are written to; empty: kiok.joblog.s3.bucket (no bucket at all and no "
        "kiok.backup.dir: backups are off).",
    ),
    Key("kiok.backup.s3.prefix", str, "backups", "Key prefix of the backups in the bucket."),
    Key(
        "kiok.backup.s3.path.style",
        bool,
        True,
        "Path-style addressing for the backup bucket (no: virtual-hosted style).",
    ),
    Key(
        "kiok.backup.s3.access.key",
        str,
        "",
        "Access key id for the backup bucket; empty: kiok.joblog.s3's.",
    ),
    Key("kiok.backup.s3.secret.key", str, "", "Secret access key for the backup bucket.", secret=True),
    Key(
        "kiok.backup.s3.connection",
        str,
        "",
        "Name of a stored connection of type s3 whose properties take precedence over the "
        "kiok.backup.s3.* settings.",
    ),
    Key(
        "kiok.admin.http.max.content.size.bytes",
        int,
        10 * MiB,
        "Largest request body the admin API accepts (413 above).",
        at_least=1,
    ),
    Key(
        "kiok.admin.http.list.scan.limit",
        int,
        5000,
        "Runs one list request (/api/v1/runs, a DAG's grid, the dashboard) reads and leaves out "
        "(not visible to the caller, or outside the filter) before it answers a short page with a "
        "nextCursor, so that a caller who may see few runs cannot make one request read the whole "
        "history.",
        at_least=1,
    ),
    Key(
        "kiok.http.request.timeout.ms",
        int,
        60_000,
        "Time a client has to send a whole request (headers and body) on an HTTP port (admin API, "
        "worker status), from connecting (with TLS, the handshake included) or from the previous "
        "response; then it is closed (408). Over TLS, also how long a closing connection waits "
        "for the client's close_notify.",
        at_least=1,
    ),
    Key(
        "kiok.http.max.connections",
        int,
        512,
        "Connections open at once on each HTTP port (with TLS, those still in their handshake "
        "included); one more is closed at once (file descriptors are the process's, shared with "
        "its store and its other connections).",
        at_least=1,
    ),
    Key(
        "kiok.http.max.connections.per.address",
        int,
        256,
        "Connections open at once on each HTTP port from one client address (the addresses in "
        "kiok.admin.http.trusted.proxies are not limited), so that one host cannot take them all.",
        at_least=1,
    ),
    Key(
        "kiok.admin.http.trusted.proxies",
        str,
        "",
        "Addresses or networks (comma separated) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto the admin HTTP believes; empty: none, the peer address counts.",
    ),
    Key("kiok.admin.token.access.expiry.ms", int, 900_000, "Lifetime of a JWT access token.", at_least=1),
    Key(
        "kiok.iam.access.keys.max.per.user",
        int,
        20,
        "Access keys one user may hold at once; creating one more gets 409 (delete one first).",
        at_least=1,
    ),
    Key(
        "kiok.admin.token.refresh.expiry.ms", int, 86_400_000, "Lifetime of a JWT refresh token.", at_least=1
    ),
    Key(
        "kiok.admin.session.max.ms",
        int,
        30 * 86_400_000,
        "Longest life of a session (a login and the token refreshes after it, as the UI and the "
        "CLI do): no token of it is valid past this time after the login, then sign in again "
        "(at least 1000: tokens count in seconds).",
        at_least=1000,
    ),
    Key(
        "kiok.iam.admin.user",
        str,
        "admin",
        "Name of the bootstrap administrator (first bootstrap only): letters, digits and _.@-, "
        "starting with a letter or digit, as any user's.",
    ),
    Key(
        "kiok.iam.admin.password",
        str,
        "",
        "Bootstrap administrator password; empty: 'admin', which must be changed at first login. "
        "Otherwise as any new password: at least 8 characters, not the user's name.",
        secret=True,
    ),
    Key(
        "kiok.admin.socket.path",
        str,
        "",
        "Local admin socket (mode 0600) for password resets; empty: <data>/admin.sock. At most "
        "107 bytes long, a unix socket's limit (a deeper data directory needs this set); a path "
        "that holds anything but a socket nothing listens on is refused (kiok removes nothing else).",
    ),
    Key(
        "kiok.internal.auth.tokens",
        str,
        "",
        "Accepted service bearer tokens (comma or newline separated).",
        secret=True,
    ),
    Key(
        "kiok.internal.auth.token.file",
        str,
        "",
        "File of accepted service bearer tokens, re-read periodically.",
    ),
    Key(
        "kiok.internal.auth.reload.interval.seconds",
        int,
        60,
        "How often the service token file is re-read.",
        at_least=1,
    ),
    Key(
        "kiok.tls.cert",
        str,
        "",
        "PEM certificate (chain) this process serves TLS with on every port; empty: plain TCP/HTTP.",
    ),
    Key("kiok.tls.key", str, "", "PEM private key of kiok.tls.cert."),
    Key(
        "kiok.tls.ca",
        str,
        "",
        "PEM CA bundle: a worker (or a forwarding master) connects to masters over TLS and verifies "
        "them against it; a master with cert, key and ca requires client certificates on the internal port.",
    ),
    Key(
        "kiok.auth.login.max.failures",
        int,
        5,
        "Failed logins per user and address before a back-off.",
        at_least=1,
    ),
    Key(
        "kiok.auth.login.window.seconds", int, 60, "Window over which failed logins are counted.", at_least=1
    ),
    Key(
        "kiok.auth.login.max.failures.per.address",
        int,
        50,
        "Failed logins per address (whatever the user names) before a back-off of that address.",
        at_least=1,
    ),
    Key(
        "kiok.auth.password.hash.concurrency",
        int,
        0,
        "Password hashes computed at once, off the event loop (0: one per CPU; at most 1024); "
        "the rest queue.",
        at_most=1024,
    ),
    Key(
        "kiok.auth.password.hash.queue.max",
        int,
        64,
        "Password hashes (logins, password changes, new users) that may wait for a free one; past "
        "it a request is refused at once with 503 overloaded and Retry-After instead of queueing.",
    ),
    Key(
        "kiok.auth.worker.max.failures",
        int,
        5,
        "Failed worker authentications per (address, worker id) (per login window) before refusal.",
        at_least=1,
    ),
    Key(
        "kiok.master.key",
        str,
        "",
        "Master passphrase (32+ characters) that wraps the data keys, as KIOK_MASTER_KEY (read "
        "once at start, but visible to kiok's own user in /proc/<pid>/environ for the process's "
        "life: prefer kiok.kms.master.key.file). Empty, and no key file: a key file "
        "<data>/master.key (mode 0600) is generated, with a warning.",
        secret=True,
    ),
    Key(
        "kiok.kms.master.key.file",
        str,
        "",
        "File holding the master passphrase (mode 0600 or stricter, or kiok refuses to start): the "
        "production way to give the master key, kept out of the environment. Set this or "
        "kiok.master.key, not both.",
    ),
    Key(
        "kiok.kms.pbkdf2.iterations",
        int,
        200_000,
        "PBKDF2-SHA256 iterations deriving the root key from the master key.",
        at_least=1,
    ),
    Key(
        "kiok.log.level",
        str,
        "INFO",
        "Log level of the kiok process: DEBUG, INFO, WARNING (or WARN), ERROR or CRITICAL (any case).",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    Key(
        "kiok.log.format",
        str,
        "text",
        "Format of the process log on stderr: text, or json (one object per line with ts, level, "
        "logger, msg, service, instance, and runId, taskId, requestId when known).",
        choices=("text", "json"),
    ),
    Key(
        "kiok.otel.enabled",
        bool,
        False,
        "Send OpenTelemetry traces (needs pip install 'kiok[otel]'): the trigger request, the run and "
        "each task attempt are spans of one trace, and each task gets TRACEPARENT.",
    ),
    Key(
        "kiok.otel.endpoint",
        str,
        "",
        "OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces (empty: the exporter's default, "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or http://localhost:4318/v1/traces).",
    ),
    Key("kiok.otel.service.name", str, "kiok", "The service.name of the spans a master sends."),
)

_BY_NAME = {k.name: k for k in KEYS}
_BY_ENV = {k.env: k for k in KEYS}
#: What kiok sets in the environment of the tasks it runs (a task may start kiok).
TASK_VARIABLES = (
    "KIOK_RUN_ID",
    "KIOK_DAG_ID",
    "KIOK_TASK_ID",
    "KIOK_ATTEMPT",
    "KIOK_SCHEDULED_TIME",
    "KIOK_INTERVAL_START",
    "KIOK_INTERVAL_END",
)
TASK_VARIABLE_PREFIX = "KIOK_PARAM_"
REDACTED = "(redacted)"
#: The tags of a plain YAML mapping (a section of a config file) and of the merge key ``<<``.
_YAML_MAP = "tag:yaml.org,2002:map"
_YAML_MERGE = "tag:yaml.org,2002:merge"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(key: Key, raw: Any, source: str) -> Any:
    try:
        if key.type is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in _TRUE | _FALSE:
                return s in _TRUE
            raise ValueError(raw)
        if key.type is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return _in_range(key, raw if isinstance(raw, int) else _ascii_int(str(raw)), source)
        if key.type is float:
            value = _ascii_float(str(raw)) if not isinstance(raw, bool) else float("nan")
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return _in_range(key, value, source)
        return _text(key, raw, source)
    except ValueError:
        raise InvalidInput(f"{key.name} ({source}): expected {key.type.__name__}, got {raw!r}") from None


#: An int as settings take it: ASCII digits, an optional '-'. Python's ``int`` also takes other
#: scripts' digits (``'٨٠٨٠'`` is 8080) and ``_`` between digits (``'1_0'`` is 10).
_INT = re.compile(r"-?[0-9]+")


def _ascii_int(text: str) -> int:
    """``text`` (blanks around it ignored) as an int of ASCII digits, else ``ValueError``."""
    text = text.strip()
    if not _INT.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _ascii_float(text: str) -> float:
    """``text`` as ``float`` reads it, but only in ASCII, without ``_`` (see ``_INT``) and
    without a leading ``+``, as a whole number is written (docs/operations.md)."""
    text = text.strip()
    if not text.isascii() or "_" in text or text.startswith("+"):
        raise ValueError(text)
    return float(text)


#: The ids of masters and workers, as the internal protocol and the store keys take them
#: (kept in step with ``kiok.master.admission.WORKER_ID``).
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


#: Spellings of log levels that name one of ``kiok.log.level``'s choices.
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def _text(key: Key, raw: Any, source: str) -> str:
    """A string setting. A YAML null, number, list, mapping or boolean is refused rather than
    turned into text ("None" would be a host, a bucket, a password; ``10`` is a number):
    write '' for empty, quote ``"yes"`` and ``"10"``."""
    if raw is None:
        raise InvalidInput(f"{key.name} ({source}): no value (null); write '' for an empty value")
    if not isinstance(raw, str):
        # A secret's value is never shown, not even as YAML read it.
        shown = type(raw).__name__ if key.secret else f"{type(raw).__name__} {raw!r}"
        raise InvalidInput(
            f"{key.name} ({source}): expected text, got {shown} (as YAML read it): quote the value"
        )
    value = raw
    if key.choices:
        fold = key.name == "kiok.log.level"
        if fold:
            value = _LEVEL_ALIASES.get(value.upper(), value)
        found = next((c for c in key.choices if (c.upper() == value.upper() if fold else c == value)), None)
        if found is None:
            raise InvalidInput(
                f"{key.name} ({source}): expected one of {', '.join(key.choices)}, got {value!r}"
            )
        return found
    if key.required and not value.strip():
        raise InvalidInput(f"{key.name} ({source}): must not be empty")
    if key.is_id and (value or key.default) and not ID.match(value):
        raise InvalidInput(
            f"{key.name} ({source}): {value!r} is not an id (letters, digits and _.-, starting "
            "with a letter or digit, at most 128 characters)"
        )
    return value


#: Numeric settings that 0 would break (no slot, no time, no byte): at least 1.
_Number = TypeVar("_Number", int, float)
#: Past this no count or duration of kiok's makes sense, and C code (sockets, sleeps) overflows.
_NUMBER_MAX = 2**53


def _in_range(key: Key, value: _Number, source: str) -> _Number:
    """A numeric setting within what kiok can use: ``key.at_least`` to 65535 for a port, else to 2^53."""
    low = key.at_least
    high = key.at_most if key.at_most is not None else 65535 if key.name.endswith(".port") else _NUMBER_MAX
    if not low <= value <= high:
        raise InvalidInput(f"{key.name} ({source}): {value!r} is out of range ({low} to {high})")
    return value


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (PyYAML's own text spans several)."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem and e.problem_mark is not None:
        mark = e.problem_mark
        return f"{e.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(e).split())


def _read_config(text: str, path: Path) -> Any:
    """The document of a config file. A setting given twice is refused naming both lines
    (PyYAML keeps the last value without a word), also when the two spellings differ
    (``kiok.worker.labels`` and ``labels`` in a ``kiok: worker:`` section): one key once
    flattened. As the DAG loader (``kiok.dag.yaml_doc``), it looks at the composed nodes,
    which know their lines, before anything is built."""
    root = yaml.compose(text, Loader=_ConfigLoader)
    if isinstance(root, MappingNode):
        _refuse_repeated(root, "", {}, path)
    return yaml.load(text, Loader=_ConfigLoader) or {}


class _ConfigLoader(yaml.SafeLoader):
    """YAML as the config file reads it: a plain number is written as in a ``KIOK_``
    variable, decimal digits (and a point or exponent for a fraction). YAML 1.1 reads ``010``
    as 8, ``0x10`` as 16, ``1:30`` as 90 and ``1_0.5`` as 10.5: the same text would have meant
    another number in the file than in the environment (found by the operability probes of
    session 28). Those are text here, which a number setting refuses naming its key; so is
    what an explicit ``!!int`` or ``!!float`` tag marks that is not such a number."""


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
#: A fraction as a variable writes it (``_ascii_float``): a point or an exponent, no ``_``.
_FRACTION = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?")

_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
#: A plain whole number the loader reads as one: without a leading zero (nor ``-0``), which it
#: keeps as text (``010`` is then read by the setting, as 10 for a number and refused for a
#: yes/no, as the variable's ``010`` is; read as the number 1, a config file's ``01`` had been
#: a yes, and ``-0`` a no).
_PLAIN_INT = re.compile(r"(?:0|-?[1-9][0-9]*)")
_ConfigLoader.add_implicit_resolver(_INT_TAG, re.compile(f"^{_PLAIN_INT.pattern}$"), list("-0123456789"))
_ConfigLoader.add_implicit_resolver(_FLOAT_TAG, re.compile(f"^{_FRACTION.pattern}$"), list("-.0123456789"))


def _number(kind: type[int] | type[float], pattern: re.Pattern[str]) -> Callable[[Any, Any], Any]:
    """A constructor of ``kind`` for a scalar that is written as one; other text is kept as
    text (a whole number past Python's 4300 digits too), for the setting to refuse."""

    def construct(loader: Any, node: Any) -> Any:
        text = loader.construct_scalar(node)
        if isinstance(text, str) and pattern.fullmatch(text):
            with contextlib.suppress(ValueError):
                return kind(text)
        return text

    return construct


_ConfigLoader.add_constructor(_INT_TAG, _number(int, _INT))
_ConfigLoader.add_constructor(_FLOAT_TAG, _number(float, _FRACTION))


def _refuse_repeated(node: MappingNode, prefix: str, seen: dict[str, int], path: Path) -> None:
    """``InvalidInput`` for the first dotted key under ``node`` that ``seen`` ({key: line},
    filled in as it goes) already holds. Merge keys (``<<``) are left to YAML: keys written
    next to one replace the merged ones by design. A key written twice in one mapping is
    refused whatever it holds: YAML would keep only the last of two sections, and every
    setting of the first would be lost without a word."""
    here: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _YAML_MERGE:
            continue
        name = f"{prefix}.{key_node.value}" if prefix else key_node.value
        line = key_node.start_mark.line + 1
        if key_node.value in here:
            raise InvalidInput(
                f"config file {path}: {name} is given twice (line {here[key_node.value]} and line "
                f"{line}): keep one"
            )
        here[key_node.value] = line
        if isinstance(value_node, MappingNode) and value_node.tag == _YAML_MAP:
            _refuse_repeated(value_node, name, seen, path)
            continue
        if name in seen:
            raise InvalidInput(
                f"config file {path}: {name} is given twice (line {seen[name]} and line {line}): keep one"
            )
        seen[name] = line


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_variables(env: Mapping[str, str], known_env: Iterable[str] = ()) -> list[str]:
    """A warning for each ``KIOK_`` variable of ``env`` that is neither a setting, nor in
    ``known_env`` (the CLI's own), nor one kiok sets for its tasks; sorted."""
    known = {*_BY_ENV, *known_env, *TASK_VARIABLES}
    return [
        f"unknown environment variable {name} ignored{_did_you_mean(name, _BY_ENV)}"
        for name in sorted(env)
        if name.startswith("KIOK_") and name not in known and not name.startswith(TASK_VARIABLE_PREFIX)
    ]


def _check_together(values: Mapping[str, Any], sources: Mapping[str, tuple[str, str]]) -> None:
    """Settings that are only right together: refused naming both keys and where they came from."""
    low, high = "kiok.raft.election.timeout.min.ms", "kiok.raft.election.timeout.max.ms"
    if values[low] >= values[high]:

        def where(name: str) -> str:
            source, origin = sources.get(name, ("default", ""))
            return origin or source

        raise InvalidInput(
            f"{low} ({values[low]}, {where(low)}) must be less than {high} ({values[high]}, {where(high)})"
        )


@dataclass(frozen=True)
class Explained:
    """One setting as ``kiok config show`` prints it: ``source`` is default, file, env or
    flag; ``origin`` the file, variable or flag it came from (empty for a default)."""

    key: str
    value: Any
    source: str
    origin: str


class Settings:
    """Resolved configuration; read with ``settings["kiok.worker.task.slots"]``."""

    def __init__(
        self,
        values: Mapping[str, Any],
        sources: Mapping[str, tuple[str, str]] | None = None,
        warnings: Iterable[str] = (),
        secrets_in_file: Mapping[str, str] | None = None,
    ) -> None:
        self._values = dict(values)
        self._sources = dict(sources or {})
        #: What loading noticed but did not refuse (unknown ``KIOK_`` variables), to be logged.
        self.warnings = tuple(warnings)
        #: The secret keys the config file gives a value (name -> the file), whatever
        #: overrides them: the file holds the secret all the same.
        self.secrets_in_file = dict(secrets_in_file or {})

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        known_env: Iterable[str] = (),
        override_names: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve every key. ``known_env``: other ``KIOK_`` variables that are not settings
        but are not unknown either (the CLI's own); ``override_names``: the flag that gave
        each override, for ``explain``. Raises ``InvalidInput`` naming the key, file or
        variable for a value of the wrong type or an unknown key in the file or overrides."""
        values = {k.name: k.default for k in KEYS}
        sources: dict[str, tuple[str, str]] = {k.name: ("default", "") for k in KEYS}
        secrets_in_file: dict[str, str] = {}
        if config_file:
            path = Path(config_file)
            try:
                doc = _read_config(path.read_text(encoding="utf-8"), path)
            except OSError as e:
                raise InvalidInput(f"cannot read config file {path}: {e}") from None
            except UnicodeDecodeError as e:
                raise InvalidInput(f"cannot read config file {path}: not UTF-8 (byte {e.start})") from None
            except RecursionError:
                raise InvalidInput(f"cannot read config file {path}: nested too deeply") from None
            except yaml.YAMLError as e:
                raise InvalidInput(f"cannot read config file {path}: {_yaml_problem(e)}") from None
            if not isinstance(doc, Mapping):
                raise InvalidInput(f"config file {path} must hold a mapping of keys")
            for name, raw in _flatten(doc).items():
                if name not in _BY_NAME:
                    raise InvalidInput(
                        f"config file {path}: unknown key {name!r}{_did_you_mean(name, _BY_NAME)}"
                    )
                values[name] = _coerce(_BY_NAME[name], raw, str(path))
                sources[name] = ("file", str(path))
                if _BY_NAME[name].secret and values[name]:
                    secrets_in_file[name] = str(path)
        for key in KEYS:
            if env is not None and key.env in env:
                values[key.name] = _coerce(key, env[key.env], key.env)
                sources[key.name] = ("env", key.env)
        for name, raw in (overrides or {}).items():
            if name not in _BY_NAME:
                raise InvalidInput(f"unknown setting {name!r}{_did_you_mean(name, _BY_NAME)}")
            flag = (override_names or {}).get(name, "override")
            values[name] = _coerce(_BY_NAME[name], raw, flag)
            sources[name] = ("flag", flag)
        _check_together(values, sources)
        return cls(values, sources, unknown_variables(env or {}, known_env), secrets_in_file)

    def explain(self) -> list[Explained]:
        """Every setting in reference order with its source; a set secret shows as
        ``REDACTED``."""
        out = []
        for key in KEYS:
            value = self._values[key.name]
            source, origin = self._sources.get(key.name, ("default", ""))
            out.append(Explained(key.name, REDACTED if key.secret and value else value, source, origin))
        return out

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get_int(self, name: str) -> int:
        value = self._values[name]
        assert isinstance(value, int)
        return value

    def get_str(self, name: str) -> str:
        value = self._values[name]
        assert isinstance(value, str)
        return value

    @property
    def data_dir(self) -> Path:
        return Path(self.get_str("kiok.base.data.dir")).resolve()

    @property
    def admin_socket_path(self) -> Path:
        """Where a master listens for local admin requests, and ``kiok admin`` finds it."""
        return Path(self.get_str("kiok.admin.socket.path") or self.data_dir / "admin.sock")

    def with_overrides(self, **dotted: Any) -> Settings:
        """A copy with some keys replaced (keys given with '_' for '.')."""
        values, sources = dict(self._values), dict(self._sources)
        for k, v in dotted.items():
            values[k.replace("_", ".")] = v
            sources[k.replace("_", ".")] = ("flag", "override")
        return Settings(values, sources, self.warnings, self.secrets_in_file)


def reference_markdown() -> str:
    """The configuration reference, as kept in docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `kiok/config.py` (a test keeps this file in step). Every key can be set in a",
        "config file (`--config kiok.yaml`), overridden by an environment variable, and by a command-line",
        "flag where one exists. Precedence: flag > environment > config file > default.",
        "An unknown key in a config file stops kiok at start, and so does a key given twice there",
        "(also once dotted and once in a section: both lines are named); an unknown `KIOK_` variable",
        "is a warning (both name the closest known setting). A number out of range stops it too:",
        "ports are 1 to 65535 (kiok announces and registers its addresses: no random port 0),",
        "other numbers 0 to 2^53, and at least 1 where 0 would leave",
        "nothing to work with (slots, intervals, timeouts, expiries, sizes, failure limits); a few",
        "counts that start processes or threads have a lower maximum, given in their line. A whole",
        "number is decimal digits in the config file as in a variable (`010` is 10; `0x10` and",
        "`1:30`, which YAML 1.1 reads as 16 and 90, are refused); a yes/no is `yes`/`no`,",
        "`true`/`false`, `on`/`off` or `1`/`0` in both (`01` is refused). A text",
        "setting refuses a YAML null, number, list or boolean in the config file (write `''` for",
        'empty, quote `"yes"` and `"10"`); the log level, the log format and the task isolation',
        "take only the values listed; ids take letters, digits and `_.-`;",
        "`kiok.raft.election.timeout.min.ms` must be less than `kiok.raft.election.timeout.max.ms`;",
        "the bootstrap administrator's name and password are checked as any user's;",
        "two ports of one process (admin, internal, worker status, its own Raft port in",
        "`kiok.master.peers`) on one number are refused, naming both settings.",
        "A boolean takes `yes`/`no`, `true`/`false`, `on`/`off` or `1`/`0`; its default is given",
        "here as `kiok config show` prints it, `yes` or `no`.",
        "Each refusal is one line naming the key. `kiok config show` prints every",
        "setting with where its value came from (default, file, env, flag), and refuses with the",
        "same line (exit status 1) what `kiok standalone` would refuse at start on the settings alone",
        "(`--for master`, `--for worker`: what those would), binding no port and touching no data;",
        "secrets are shown",
        f"as `{REDACTED}`: {', '.join(f'`{k.name}`' for k in KEYS if k.secret)}.",
        "",
        "| key | environment | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for k in KEYS:
        if isinstance(k.default, bool):  # as `kiok config show` (kiok.cli.output.text) prints it
            default = "`yes`" if k.default else "`no`"
        else:
            default = f"`{k.default}`" if k.default != "" else "(empty)"
        lines.append(f"| `{k.name}` | `{k.env}` | {k.type.__name__} | {default} | {k.doc} |")
    return "\n".join(lines) + "\n"

"""Object stores: where bytes that outgrow RocksDB go (archived job logs, backups).

One small interface, ``ObjectStore``, with two implementations: ``S3ObjectStore`` (any
S3-compatible service through boto3) and ``DirObjectStore`` (a plain directory, for small
installs and tests). Objects are immutable byte strings addressed by '/'-separated keys;
a put may overwrite a key, which is what makes kiok's writers idempotent (a re-flush after a
failover writes the same bytes under the same key).

Errors: a missing object is ``ObjectMissing``; a store that cannot be reached or refuses
(connection refused, timeouts, no such bucket, access denied) is ``ObjectStoreUnavailable``
(a ``NotReady``: 503 if it ever reaches the API). Callers never see a botocore exception.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from kiok.errors import InvalidInput, KiokError, NotReady
from kiok.store import s3_deadline

log = logging.getLogger(__name__)

#: Smallest part S3 accepts in a multipart upload (all parts but the last).
S3_MIN_PART_BYTES = 5 * 1024 * 1024
#: Keys one listing may hold before it fails (``kiok.s3.list.max.keys``).
DEFAULT_MAX_LIST_KEYS = 2_000_000
#: Truncated pages without a key, in a row, before a listing fails (it does not advance).
_MAX_EMPTY_PAGES = 100
#: Whole-request deadline of one S3 call (``kiok.s3.request.timeout.ms``).
DEFAULT_REQUEST_TIMEOUT_MS = 300_000
#: The settings/properties read per section; a connection of type s3 uses the same names.
S3_FIELDS = ("endpoint", "region", "bucket", "prefix", "path.style", "access.key", "secret.key")


class ObjectMissing(KiokError):
    """The key holds no object."""

    code = "object_missing"


class ObjectStoreUnavailable(NotReady):
    """The object store did not answer, or refused the request (credentials, bucket)."""

    code = "object_store_unavailable"


class ObjectStore(Protocol):
    """A flat namespace of immutable byte objects addressed by '/'-separated keys."""

    def put(self, key: str, data: bytes) -> None: ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, end: int) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list_dated(self, prefix: str) -> list[tuple[str, int]]:
        """Like ``list``, with each object's last-modified time (ms since the epoch, the
        store's clock: the file's mtime, S3's ``LastModified``)."""
        ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def where(self, key: str) -> str:
        """Where an operator finds the object: the file's path, or ``s3://bucket/prefix/key``
        (a message naming only the key relative to the prefix sent them looking for it in
        the wrong place: found by the lifecycle probe of session 27)."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape a directory root or mean different things to S3 and to a
    file system: empty, absolute, '.'/'..' or empty segments, backslashes, NUL."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidInput(f"invalid object key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidInput(f"invalid object key {key!r}")
    return key


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise InvalidInput(f"invalid byte range [{start}, {end})")


# --- a directory ------------------------------------------------------------------------------

_TMP_SUFFIX = ".kiok-tmp"


class DirObjectStore:
    """Objects as files under ``root``. A put writes a temporary file in the target directory,
    fsyncs it, renames it over the key and fsyncs the directory: a reader sees the old object
    or the new one, never a torn one, and a crash leaves at most a ``.kiok-tmp`` file that
    ``list`` ignores."""

    def __init__(self, root: Path) -> None:
        """ObjectStoreUnavailable when ``root`` cannot be made a directory (a file there, no
        permission): a clear refusal naming it, not an internal error."""
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ObjectStoreUnavailable(
                f"{self.root} cannot be used as a directory: {e.strerror or e}"
            ) from None

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def where(self, key: str) -> str:
        return str(self.root / key)

    def _parent_fd(self, key: str) -> tuple[int, str]:
        """An open descriptor of the key's directory, reached one component at a time without
        following a symlink (whoever can write to the directory cannot make kiok read or
        delete outside it), and the key's last segment. ObjectMissing when a component is
        missing, a symlink or not a directory."""
        *dirs, name = check_key(key).split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in dirs:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError:
            os.close(fd)
            raise ObjectMissing(f"object {key!r} not found") from None
        return fd, name

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[Any]:
        """The key's file opened for reading: a regular file only (not a symlink, a FIFO that
        would block, a device that never ends); ObjectMissing otherwise."""
        dir_fd, name = self._parent_fd(key)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            raise ObjectMissing(f"object {key!r} not found") from None
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ObjectMissing(f"object {key!r} is not a regular file")
        with os.fdopen(fd, "rb") as f:
            yield f

    def _check_inside(self, path: Path, key: str) -> None:
        """A write must land under the root: no symlinked directory on the way."""
        parent = path.parent
        while parent != self.root and not parent.exists():
            parent = parent.parent
        if not parent.resolve().is_relative_to(self.root.resolve()):
            raise InvalidInput(f"invalid object key {key!r}: it leads outside the directory")

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, [data])

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """ObjectStoreUnavailable naming the directory and the system's reason when it cannot
        be written (a full or read-only disk): a refusal, not an internal error."""
        path = self._path(key)
        self._check_inside(path, key)
        try:
            self._write(path, key, chunks)
        except OSError as e:
            raise ObjectStoreUnavailable(f"{self.root}: cannot write {key}: {e.strerror or e}") from None

    def _write(self, path: Path, key: str, chunks: Iterable[bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._check_inside(path, key)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        with self._open(key) as f:
            return bytes(f.read())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        _check_range(start, end)
        with self._open(key) as f:
            f.seek(start)
            return bytes(f.read(end - start))

    def exists(self, key: str) -> bool:
        try:
            with self._open(key):
                return True
        except ObjectMissing:
            return False

    def list_dated(self, prefix: str) -> list[tuple[str, int]]:
        out = []
        for key in self.list(prefix):
            with contextlib.suppress(FileNotFoundError):  # deleted since it was listed
                out.append((key, self._path(key).stat().st_mtime_ns // 1_000_000))
        return out

    def list(self, prefix: str) -> list[str]:
        out = []
        for path in self._walk(self.root):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                out.append(key)
        return sorted(out)

    def _walk(self, top: Path) -> Iterator[Path]:
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if not name.endswith(_TMP_SUFFIX):
                    yield Path(dirpath) / name

    def delete(self, key: str) -> None:
        try:
            dir_fd, name = self._parent_fd(key)
        except ObjectMissing:
            return
        try:
            os.unlink(name, dir_fd=dir_fd)  # a symlink itself goes, never what it points to
        except (FileNotFoundError, IsADirectoryError):
            pass
        finally:
            os.close(dir_fd)

    def remove_empty_dirs(self, prefix: str) -> None:
        """Remove the directory ``root/<prefix>`` and those under it that are empty (what
        deleting every object of a prefix leaves), deepest first. Only empty directories go
        (``rmdir`` refuses any other); a symlink is never followed nor removed."""
        top = self._path(prefix)
        if top.is_symlink() or not top.is_dir():
            return
        for dirpath, _dirs, _files in os.walk(top, topdown=False):  # symlinked dirs not entered
            with contextlib.suppress(OSError):  # not empty (or gone): it stays
                os.rmdir(dirpath)


# --- S3 ---------------------------------------------------------------------------------------


class S3ObjectStore:
    """Objects in one bucket under ``prefix`` (keys are joined as ``prefix/key``).

    boto3 is imported lazily so that a master without S3 settings never pays for it. Retries
    are few and timeouts short: an unreachable store must make the caller's loop notice
    quickly (and keep the data where it is), not hang a flush for minutes. Every call also has
    a whole-request deadline (``request_timeout_s``, retries and body reads included): a server
    that trickles bytes never trips the per-read timeout, the deadline still ends the call."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        prefix: str = "",
        path_style: bool = True,
        access_key: str = "",
        secret_key: str = "",
        part_size: int = 8 * 1024 * 1024,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        max_list_keys: int = DEFAULT_MAX_LIST_KEYS,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_MS / 1000,
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise InvalidInput("S3 object store: bucket is empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = max(part_size, S3_MIN_PART_BYTES)
        self.endpoint = endpoint
        self.max_list_keys = max(1, max_list_keys)
        self.request_timeout_s = max(0.001, float(request_timeout_s))
        config = Config(
            region_name=region or "us-east-1",
            s3={"addressing_style": "path" if path_style else "virtual"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        )
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            config=config,
        )
        if not s3_deadline.install(self._client):  # a botocore whose insides moved
            log.warning(
                "S3 object store: this botocore's connection pools are not where kiok expects "
                "them; kiok.s3.request.timeout.ms cannot cut a call short (read timeouts still apply)"
            )

    def where(self, key: str) -> str:
        # Not ``_full``, which refuses what is no key: a listing's prefix ("run/") is named too.
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{key}"

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` (botocore calls) within the whole-request deadline, its errors as kiok's:
        ObjectMissing, or ObjectStoreUnavailable (naming the deadline when it passed)."""
        result, expired, took = s3_deadline.run_within(
            self.request_timeout_s, lambda: self._translated(what, key, fn)
        )
        if expired:
            # Also when fn returned: the sockets were cut, so what it got may be a truncated
            # answer that only looks complete (a 200 whose headers ended at the cut).
            body = result.get("Body") if isinstance(result, dict) else None
            if body is not None:
                with contextlib.suppress(Exception):
                    body.close()
            raise ObjectStoreUnavailable(
                f"S3 {what} {self.where(key)}: "
                f"no complete answer within {self.request_timeout_s * 1000:.0f} ms "
                f"(kiok.s3.request.timeout.ms), gave up after {took:.1f} s"
            )
        return result

    def _translated(self, what: str, key: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(f"object {key!r} not found") from None
            raise ObjectStoreUnavailable(f"S3 {what} {self.where(key)}: {code or err}") from None
        except BotoCoreError as err:  # a connection cut, a body cut short: which object, too
            raise ObjectStoreUnavailable(f"S3 {what} {self.where(key)}: {err}") from None

    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        self._call("put", key, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=data))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """One put_object while the stream fits in a part; a multipart upload (parts of
        ``part_size``) once it does not. A failed multipart upload is aborted."""
        full = self._full(key)
        buf = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        def flush_part(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = self._call(
                    "multipart",
                    key,
                    lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=full),
                )
                upload_id = str(created["UploadId"])
            number = len(parts) + 1
            uid = upload_id
            answer = self._call(
                "upload part",
                key,
                lambda: self._client.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=uid, PartNumber=number, Body=data
                ),
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        try:
            for chunk in chunks:
                buf += chunk
                # Keep one byte back so the final part is never empty.
                while len(buf) > self.part_size:
                    flush_part(bytes(buf[: self.part_size]))
                    del buf[: self.part_size]
            if upload_id is None:
                self.put(key, bytes(buf))
                return
            if buf:
                flush_part(bytes(buf))
            uid = upload_id
            self._call(
                "complete multipart",
                key,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=uid, MultipartUpload={"Parts": parts}
                ),
            )
        except BaseException:
            if upload_id is not None:
                uid = upload_id
                # Best effort: a bucket lifecycle rule reaps what an abort cannot.
                with contextlib.suppress(Exception):
                    self._call(
                        "abort multipart",
                        key,
                        lambda: self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=full, UploadId=uid
                        ),
                    )
            raise

    def get(self, key: str) -> bytes:
        full = self._full(key)

        def get_whole() -> bytes:  # the request and its body's transfer: one deadline
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()  # a read that failed half way leaves no connection behind

        return bytes(self._call("get", key, get_whole))

    def _read_body(self, key: str, answer: Any, start: int, limit: int) -> bytes:
        """At most ``limit`` bytes of a ranged get's body, then the connection is dropped: a
        server that ignores ``Range`` cannot make kiok read a whole (multi-GiB) object. Bytes
        from another offset than ``start`` are refused (from offset 0 they are the right ones)."""
        body = answer["Body"]
        got = str(answer.get("ContentRange") or "")
        if start > 0 and not got.startswith(f"bytes {start}-"):
            body.close()
            raise ObjectStoreUnavailable(
                f"S3 get {self.bucket}/{self._full(key)}: the server ignored the byte range "
                f"(asked from {start}, answered {got or 'the whole object'})"
            )

        def read() -> bytes:
            out = bytearray()
            try:
                while len(out) < limit:
                    chunk = body.read(min(limit - len(out), 1024 * 1024))
                    if not chunk:
                        break
                    out += chunk
            finally:
                body.close()
            return bytes(out)

        return bytes(self._call("get", key, read))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        _check_range(start, end)
        if end == start:
            if not self.exists(key):
                raise ObjectMissing(f"object {key!r} not found")
            return b""
        full = self._full(key)
        try:
            answer = self._call(
                "get",
                key,
                lambda: self._client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={start}-{end - 1}"
                ),
            )
        except ObjectStoreUnavailable as err:
            if "InvalidRange" in err.message:  # start at or past the end of the object
                return b""
            raise
        return self._read_body(key, answer, start, end - start)

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self._call("head", key, lambda: self._client.head_object(Bucket=self.bucket, Key=full))
        except ObjectMissing:
            return False
        return True

    def list_dated(self, prefix: str) -> list[tuple[str, int]]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0

        def collect() -> list[tuple[str, int]]:
            out: list[tuple[str, int]] = []
            token: str | None = None
            seen: set[str] = set()
            empty = 0
            while True:
                more = {"ContinuationToken": token} if token else {}
                # One deadline per page: a long listing is many requests, each bounded.
                page = self._call(
                    "list",
                    prefix or "(all)",
                    functools.partial(
                        self._client.list_objects_v2, Bucket=self.bucket, Prefix=full_prefix, **more
                    ),
                )
                for item in page.get("Contents", []):
                    key = self._checked_key(item, prefix, full_prefix, seen)
                    if len(seen) > self.max_list_keys:  # "folder" keys too: they are kept in ``seen``
                        raise self._bad_listing(
                            prefix, f"more than {self.max_list_keys} keys (kiok.s3.list.max.keys)"
                        )
                    if key.endswith("/"):  # a "folder" made by a console: never kiok's
                        continue
                    out.append((key[strip:], int(item["LastModified"].timestamp() * 1000)))
                empty = 0 if page.get("Contents") else empty + 1
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    return out
                if empty > _MAX_EMPTY_PAGES:
                    raise self._bad_listing(prefix, f"{empty} truncated pages in a row without a key")

        return sorted(collect())

    def _bad_listing(self, prefix: str, why: str) -> ObjectStoreUnavailable:
        where = f"{self.prefix}/{prefix}" if self.prefix else prefix
        return ObjectStoreUnavailable(f"S3 listing of {self.bucket}/{where} refused: {why}")

    def _checked_key(self, item: Any, prefix: str, full_prefix: str, seen: set[str]) -> str:
        """The key of one entry of a listing page, checked: under the prefix asked for (a
        server that ignores ``prefix`` must not make a caller delete other runs' objects), not
        listed before (a listing that repeats itself does not advance; S3 lists in key order,
        but directory buckets do not, so order is not required), with a ``LastModified``."""
        key = item.get("Key")
        if not isinstance(key, str) or not key.startswith(full_prefix):
            raise self._bad_listing(prefix, f"key {key!r} is outside the prefix")
        if key in seen:
            raise self._bad_listing(prefix, f"it does not advance (key {key!r} again)")
        if not hasattr(item.get("LastModified"), "timestamp"):
            raise self._bad_listing(prefix, f"key {key!r} has no LastModified")
        seen.add(key)
        return key

    def list(self, prefix: str) -> list[str]:
        return [key for key, _ in self.list_dated(prefix)]

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))


# --- from settings ----------------------------------------------------------------------------

_JOBLOG_SECTION = "kiok.joblog.s3"
#: The job-log section's settings, spelled out (a test checks every setting is read somewhere).
JOBLOG_S3_SETTINGS = (
    "kiok.joblog.s3.endpoint",
    "kiok.joblog.s3.region",
    "kiok.joblog.s3.bucket",
    "kiok.joblog.s3.prefix",
    "kiok.joblog.s3.path.style",
    "kiok.joblog.s3.access.key",
    "kiok.joblog.s3.secret.key",
    "kiok.joblog.s3.connection",
)
#: Property names of a stored connection of type s3 (camel-case and dotted both accepted).
_CAMEL = {"path.style": "pathStyle", "access.key": "accessKey", "secret.key": "secretKey"}


def _setting(settings: Any, name: str) -> Any:
    try:
        return settings[name]
    except KeyError:
        return None


def s3_store_from_settings(
    settings: Any,
    section: str,
    lookup_connection: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> S3ObjectStore | None:
    """The S3 store a section (``kiok.joblog.s3`` or ``kiok.backup.s3``) describes, or None
    when it names no bucket (S3 not configured).

    Each field comes from, in order: the stored connection named by ``<section>.connection``
    (its properties ``endpoint``, ``region``, ``bucket``, ``prefix``, ``pathStyle``,
    ``accessKey``, ``secretKey``; ``lookup_connection`` returns the stored record), the
    section's own setting, and, for a section other than the job-log one, the job-log
    setting of the same name (so backups reuse the log bucket; the prefix is never borrowed).
    A connection that is named but absent or not of type s3 is refused: silently writing to
    another bucket would be worse than not starting the loop."""
    values: dict[str, Any] = {}
    conn_name = _setting(settings, f"{section}.connection") or ""
    if conn_name:
        record = lookup_connection(conn_name) if lookup_connection else None
        if record is None:
            raise InvalidInput(f"{section}.connection: no stored connection named {conn_name!r}")
        if record.get("type") != "s3":
            raise InvalidInput(f"{section}.connection: connection {conn_name!r} is not of type s3")
        props = record.get("properties") or {}
        for name in S3_FIELDS:
            value = props.get(name, props.get(_CAMEL.get(name, name)))
            if value not in (None, ""):
                values[name] = value
    for name in S3_FIELDS:
        if name in values:
            continue
        value = _setting(settings, f"{section}.{name}")
        if value in (None, "") and section != _JOBLOG_SECTION and name != "prefix":
            value = _setting(settings, f"{_JOBLOG_SECTION}.{name}")
        if value is not None:
            values[name] = value
    bucket = str(values.get("bucket") or "")
    if not bucket:
        return None
    path_style = values.get("path.style", True)
    if isinstance(path_style, str):
        path_style = path_style.strip().lower() in ("1", "true", "yes", "on")
    part_size = _setting(settings, "kiok.s3.multipart.part.size.bytes")
    max_list_keys = _setting(settings, "kiok.s3.list.max.keys")
    request_timeout_ms = _setting(settings, "kiok.s3.request.timeout.ms")
    return S3ObjectStore(
        endpoint=str(values.get("endpoint") or ""),
        region=str(values.get("region") or ""),
        bucket=bucket,
        prefix=str(values.get("prefix") or ""),
        path_style=bool(path_style),
        access_key=str(values.get("access.key") or ""),
        secret_key=str(values.get("secret.key") or ""),
        part_size=int(part_size) if part_size else 8 * 1024 * 1024,
        max_list_keys=int(max_list_keys) if max_list_keys else DEFAULT_MAX_LIST_KEYS,
        request_timeout_s=(int(request_timeout_ms) if request_timeout_ms else DEFAULT_REQUEST_TIMEOUT_MS)
        / 1000,
    )

"""One reaper per team at a time: a lock object next to the Pulumi state.

The lock lives where the team's state lives (``state.backend_url``), because
that is the one place every teammate's reaper (a laptop, a CI job, a timer on
a tower) can already reach:

- ``file://DIR``: ``DIR/.nomadrig/locks/reaper-<team>.json``, created with
  ``O_CREAT|O_EXCL`` (exactly one creator wins). A stale lock (past its
  expiry: the holder crashed) is taken over under an ``flock`` on a guard file,
  which release also takes, so the file cannot change between "it is
  expired" and "remove it". For one machine or a POSIX file system.
- ``s3://BUCKET/PREFIX``: the same object key, written with
  ``PutObject(IfNoneMatch='*')`` (S3 conditional write: fails with 412 when
  the key exists). A stale lock is replaced with ``PutObject(IfMatch=<etag>)``
  so two takers cannot both win.
- ``gs://BUCKET/PREFIX``: the same object, written with
  ``if_generation_match=0`` (create only); takeover with
  ``if_generation_match=<generation>`` of the stale object.

Every lock records owner, pid, host and an expiry; a run that outlives the
expiry can be taken over, so the expiry (default 6 h) must exceed the
longest run (snapshot waits are bounded well below it).

A backend that cannot hold such an object (Pulumi Cloud, azblob://) needs a
lock location of its own: ``nomadrig reap --apply --lock-url URL`` (or
``$NOMADRIG_REAPER_LOCK``) with one of the three schemes above. Without one
the run is refused before it touches anything, with that fix. The team
file's default ``file://~/.nomadrig/state`` follows ``NOMADRIG_HOME``, as
the engine's state does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from nomadrig.errors import BadInputError, ExitCode, InputProblem, NomadrigError
from nomadrig.paths import REAPER_LOCK_ENV, local_path_of_url

DEFAULT_TTL = timedelta(hours=6)
LOCK_DIR = ".nomadrig/locks"
LOCK_SCHEMES = ("file://", "s3://", "gs://")
LOCK_URL_FIX = (f"Pass --lock-url (or set {REAPER_LOCK_ENV}) to a place every reaper of the team can reach: "
                "s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], or file:///DIR on a shared file system "
                "(file://~/.nomadrig/state when only this machine runs the reaper).")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock, and until when it protects them."""

    team: str
    owner: str
    pid: int
    host: str
    acquired_at: str
    expires_at: str
    token: str

    def expired(self, now: datetime) -> bool:
        """Whether the holder's protection has run out.

        The record lives beside the shared state, where anyone on the team can
        write it: an expiry that no reaper could have written (not a time, or
        past year 9999 in UTC) protects nobody, and must not stop every run.
        """
        try:
            expires = datetime.fromisoformat(self.expires_at)
            return now >= (expires.astimezone(UTC) if expires.tzinfo else expires.replace(tzinfo=UTC))
        except (TypeError, ValueError, OverflowError):
            return True

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockInfo:
        return cls(**json.loads(data))

    def describe(self) -> str:
        return f"{self.owner} on {self.host} (pid {self.pid}) since {self.acquired_at}, expires {self.expires_at}"


class ReaperLockHeld(NomadrigError):
    """Another reaper of the same team is running. The CLI exits with `exit_code` (3)."""

    exit_code = ExitCode.CLOUD_FAILURE  # 3: the CLI's `handle_errors` prints the message and exits with it

    def __init__(self, team: str, where: str, holder: LockInfo | None) -> None:
        self.team = team
        self.where = where
        self.holder = holder
        who = holder.describe() if holder else "an unknown holder (the lock is being written)"
        expiry = f"after {holder.expires_at}" if holder else "once it expires"
        super().__init__(
            f"another reaper for team {team} is running: {who}.\n"
            f"  Wait for it to finish. If that run is dead, the lock is taken over automatically "
            f"{expiry}, or remove {where} by hand."
        )


class ReaperLock(Protocol):
    """A lock in one backend; `acquire` raises ReaperLockHeld when another run holds it."""

    where: str

    def acquire(self) -> LockInfo: ...

    def release(self) -> None: ...


def new_lock_info(team: str, ttl: timedelta, now: datetime, owner: str | None = None) -> LockInfo:
    """A fresh record for this process."""
    return LockInfo(
        team=team,
        owner=owner or os.environ.get("USER") or "unknown",
        pid=os.getpid(),
        host=socket.gethostname(),
        acquired_at=now.isoformat(timespec="seconds"),
        expires_at=(now + ttl).isoformat(timespec="seconds"),
        token=uuid.uuid4().hex,
    )


class FileLock:
    """An ``O_EXCL`` lock file; stale takeover and release serialised by an ``flock`` guard."""

    def __init__(
        self,
        directory: Path,
        team: str,
        *,
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], datetime] = _utcnow,
        owner: str | None = None,
    ) -> None:
        self.path = directory / LOCK_DIR / f"reaper-{team}.json"
        self.where = str(self.path)
        self.team = team
        self.ttl = ttl
        self.clock = clock
        self.owner = owner
        self.info: LockInfo | None = None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        with open(self.path.with_suffix(".guard"), "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _create(self, info: LockInfo) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(info.to_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _read(self) -> LockInfo | None:
        try:
            return LockInfo.from_bytes(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None  # being written right now (O_EXCL created it, content not yet there)

    def acquire(self) -> LockInfo:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = new_lock_info(self.team, self.ttl, self.clock(), self.owner)
        if self._create(info):
            self.info = info
            return info
        with self._guard():
            holder = self._read()
            if holder is not None and holder.expired(self.clock()):
                self.path.unlink()
                if self._create(info):
                    self.info = info
                    return info
                holder = self._read()
        raise ReaperLockHeld(self.team, self.where, holder)

    def release(self) -> None:
        if self.info is None:
            return
        with self._guard():
            holder = self._read()
            if holder is not None and holder.token == self.info.token:
                self.path.unlink()
        self.info = None


def _s3_error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _BucketLock:
    """A lock object at ``<prefix>/.nomadrig/locks/reaper-<team>.json`` in the team's state bucket."""

    SCHEME = ""

    def __init__(self, bucket: str, prefix: str, team: str, *, ttl: timedelta = DEFAULT_TTL,
                 clock: Callable[[], datetime] = _utcnow, owner: str | None = None) -> None:
        self.bucket = bucket
        self.key = "/".join(p for p in (prefix.strip("/"), LOCK_DIR, f"reaper-{team}.json") if p)
        self.where = f"{self.SCHEME}://{bucket}/{self.key}"
        self.team = team
        self.ttl = ttl
        self.clock = clock
        self.owner = owner
        self.info: LockInfo | None = None


class S3Lock(_BucketLock):
    """A conditional-write lock object in the team's state bucket."""

    SCHEME = "s3"

    def __init__(self, bucket: str, prefix: str, team: str, *, ttl: timedelta = DEFAULT_TTL,
                 clock: Callable[[], datetime] = _utcnow, owner: str | None = None, client: Any = None) -> None:
        super().__init__(bucket, prefix, team, ttl=ttl, clock=clock, owner=owner)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _read(self) -> tuple[LockInfo | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as error:
            if _s3_error_code(error) in ("NoSuchKey", "404"):
                return None, None
            raise
        etag = response["ETag"]
        try:
            return LockInfo.from_bytes(response["Body"].read()), etag
        except (ValueError, TypeError):
            return None, etag

    def acquire(self) -> LockInfo:
        info = new_lock_info(self.team, self.ttl, self.clock(), self.owner)
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=info.to_bytes(), IfNoneMatch="*")
            self.info = info
            return info
        except Exception as error:
            if _s3_error_code(error) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
        holder, etag = self._read()
        if etag is not None and (holder is None or holder.expired(self.clock())):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=info.to_bytes(), IfMatch=etag)
                self.info = info
                return info
            except Exception as error:
                if _s3_error_code(error) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
                holder, _ = self._read()
        raise ReaperLockHeld(self.team, self.where, holder)

    def release(self) -> None:
        if self.info is None:
            return
        holder, etag = self._read()
        if holder is not None and holder.token == self.info.token:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
        self.info = None


class GcsLock(_BucketLock):
    """A generation-match lock object in the team's state bucket (google-cloud-storage)."""

    SCHEME = "gs"

    def __init__(self, bucket: str, prefix: str, team: str, *, ttl: timedelta = DEFAULT_TTL,
                 clock: Callable[[], datetime] = _utcnow, owner: str | None = None, bucket_handle: Any = None) -> None:
        super().__init__(bucket, prefix, team, ttl=ttl, clock=clock, owner=owner)
        self._bucket = bucket_handle
        self._generation: int | None = None

    def _blob(self) -> Any:
        if self._bucket is None:
            try:
                from google.cloud import storage
            except ImportError as error:
                raise RuntimeError(
                    f"state.backend_url is {self.where.split('/.nomadrig')[0]}: the reaper lock in a gs:// "
                    "bucket needs `pip install google-cloud-storage`"
                ) from error
            self._bucket = storage.Client().bucket(self.bucket)
        return self._bucket.blob(self.key)

    def acquire(self) -> LockInfo:
        from_precondition = _precondition_error()
        info = new_lock_info(self.team, self.ttl, self.clock(), self.owner)
        blob = self._blob()
        try:
            blob.upload_from_string(info.to_bytes(), if_generation_match=0)
            self.info, self._generation = info, blob.generation
            return info
        except from_precondition:
            pass
        blob = self._blob()
        blob.reload()
        generation = blob.generation
        try:
            holder: LockInfo | None = LockInfo.from_bytes(blob.download_as_bytes(if_generation_match=generation))
        except (ValueError, TypeError):
            holder = None
        if holder is None or holder.expired(self.clock()):
            try:
                blob.upload_from_string(info.to_bytes(), if_generation_match=generation)
                self.info, self._generation = info, blob.generation
                return info
            except from_precondition:
                pass
        raise ReaperLockHeld(self.team, self.where, holder)

    def release(self) -> None:
        if self.info is None:
            return
        with contextlib.suppress(_precondition_error()):
            self._blob().delete(if_generation_match=self._generation)
        self.info = None


def _precondition_error() -> type[Exception]:
    """google.api_core's PreconditionFailed when installed (412 from GCS), else a never-raised stand-in."""
    try:
        from google.api_core.exceptions import PreconditionFailed
    except ImportError:  # pragma: no cover - only without google-api-core

        class PreconditionFailed(Exception):  # type: ignore[no-redef]
            pass

    return PreconditionFailed


def lock_for(
    url: str,
    team: str,
    *,
    ttl: timedelta = DEFAULT_TTL,
    clock: Callable[[], datetime] = _utcnow,
    owner: str | None = None,
    field: str = "state.backend_url",
) -> ReaperLock:
    """The lock at `url` (the state backend, or the location given for the lock); `field` names where it came from.

    Raises BadInputError (exit 2) for a URL that cannot hold a lock, before
    the reaper touches anything: the message names the field and the fix.
    """
    problem = lock_url_problem(url, field)
    if problem is not None:
        raise BadInputError("team file" if field == "state.backend_url" else "command line", [problem])
    directory = local_path_of_url(url)
    if directory is not None:
        return FileLock(directory, team, ttl=ttl, clock=clock, owner=owner)
    scheme = url[: url.index("://") + 3]
    bucket, _, prefix = url[len(scheme) :].partition("/")
    cls = S3Lock if scheme == "s3://" else GcsLock
    return cls(bucket.split("?")[0], prefix.split("?")[0], team, ttl=ttl, clock=clock, owner=owner)  # type: ignore[abstract]


def lock_url_problem(url: str, field: str = "--lock-url") -> InputProblem | None:
    """What is wrong with `url` as a reaper lock location, or None: a file://, s3:// or gs:// URL is needed.

    Pulumi Cloud keeps the state but offers no object nomadrig could write a
    lock into; azblob:// has no conditional write nomadrig uses.
    """
    if url.startswith(LOCK_SCHEMES) and url.split("://", 1)[1].split("?")[0].strip("/"):
        local = local_path_of_url(url)
        if local is None or local.is_absolute():
            return None
        return InputProblem(field, f"{url!r} is a relative path: the lock would depend on the current folder.",
                            "Write an absolute file:// URL, e.g. file:///srv/nomadrig or file://~/.nomadrig/state.")
    why = ("it is Pulumi Cloud, which keeps the state but holds no object a reaper can lock"
           if url.startswith("https://") else "the reaper's lock needs a file://, s3:// or gs:// location")
    return InputProblem(field, f"{url!r} cannot hold the reaper's lock: {why}.", LOCK_URL_FIX)


@contextlib.contextmanager
def holding(lock: ReaperLock) -> Iterator[LockInfo]:
    """Hold `lock` for the block; released even when the block raises (KeyboardInterrupt included)."""
    info = lock.acquire()
    try:
        yield info
    finally:
        lock.release()

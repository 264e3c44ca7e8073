"""Locks per (environment, block), held while a command changes that deployment.

Terraform's own state lock only covers one Terraform command; an infrablocks operation is
several (init, plan, apply, record, outputs), and a rolling upgrade many more. This lock spans
the whole operation, and when it is refused the error says who holds it, doing what, since when.

Every backend returns a :class:`Lock` from ``acquire_lock``; :func:`acquire_file_lock` is the
local implementation (an ``fcntl`` lock on a file + a JSON file describing the holder). The S3
implementation lives in :mod:`infrablocks.state.s3`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infrablocks.errors import InfrablocksError
from infrablocks.private_files import private_dir, write_private_file
from infrablocks.processes import is_alive, start_time
from infrablocks.state.records import current_identity, utc_now_iso
from infrablocks.waiting import Deadline, poll, retry

LOCK_POLL_SECONDS = 0.2
DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds a command waits for a held lock (``--lock-timeout``) before it gives up: as long as
the rolling engine lets Terraform wait for its state lock."""
WORKER_ENV = "INFRABLOCKS_LOCK_TOKEN"
"""Every Terraform process run under a lock gets the lock's token in its environment, so that
whoever takes over the lock of a holder that died can find the Terraform it left running."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock: shown to whoever is refused it."""

    environment: str
    block: str
    operation: str
    holder: str          # user@host
    host: str
    pid: int
    pid_start: int | None  # start time of pid (clock ticks since boot), to tell a recycled pid
    since: str           # ISO 8601 UTC
    token: str = field(default="")  # names the holder's worker processes (``WORKER_ENV``)

    @classmethod
    def for_this_process(cls, environment: str, block: str, operation: str) -> LockInfo:
        pid = os.getpid()
        return cls(environment=environment, block=block, operation=operation,
                   holder=current_identity(), host=socket.gethostname(), pid=pid,
                   pid_start=start_time(pid), since=utc_now_iso(),
                   token=uuid.uuid4().hex)

    def describe(self) -> str:
        """``root@box (pid 4242, running `create`) since 2026-11-26T07:43:31Z``."""
        return f"{self.holder} (pid {self.pid}, running `{self.operation}`) since {self.since}"

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def loads(cls, raw: bytes) -> LockInfo | None:
        """Parse a stored holder description; None if it is unreadable (half-written)."""
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(environment=str(data["environment"]), block=str(data["block"]),
                       operation=str(data["operation"]), holder=str(data["holder"]),
                       host=str(data["host"]), pid=int(data["pid"]),
                       pid_start=(None if data.get("pid_start") is None
                                  else int(data["pid_start"])),
                       since=str(data["since"]), token=str(data.get("token") or ""))
        except (ValueError, KeyError, TypeError):
            return None

    def holder_is_gone(self) -> bool:
        """True only when the holder provably died: same host, and its process is gone."""
        return self.host == socket.gethostname() and not is_alive(self.pid, self.pid_start)


class LockHeldError(InfrablocksError):
    """The (environment, block) is locked by another operation."""

    exit_code = 1

    def __init__(self, environment: str, block: str, holder: LockInfo | None,
                 *, where: str) -> None:
        who = holder.describe() if holder else "another process (holder details not written yet)"
        super().__init__(
            f"block {block!r} in environment {environment!r} is locked by {who}",
            hint=f"wait for that operation to finish and retry (lock: {where})",
        )
        self.environment = environment
        self.block = block
        self.holder = holder


class Lock:
    """A held lock; a context manager. ``note`` says when a stale lock was taken over, and
    ``previous`` describes the holder that died without releasing it."""

    def __init__(self, info: LockInfo, release: Callable[[], None], *,
                 note: str | None = None, previous: LockInfo | None = None,
                 hand_back: Callable[[LockInfo], None] | None = None) -> None:
        self.info = info
        self.note = note
        self.previous = previous
        self._release = release
        self._hand_back = hand_back
        self._released = False
        with _HELD_LOCK:
            _HELD[(info.environment, info.block)] = info

    @property
    def held(self) -> bool:
        return not self._released

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if not self._released:
            self._released = True
            with _HELD_LOCK:
                if _HELD.get((self.info.environment, self.info.block)) is self.info:
                    del _HELD[(self.info.environment, self.info.block)]
            self._release()

    def hand_back(self) -> None:
        """Release a lock taken over from a dead holder while leaving that holder recorded,
        so that the next acquirer also sees it and waits for what it left running."""
        if self._released:
            return
        if self.previous is None or self._hand_back is None:
            self.release()
            return
        self._released = True
        with _HELD_LOCK:
            if _HELD.get((self.info.environment, self.info.block)) is self.info:
                del _HELD[(self.info.environment, self.info.block)]
        self._hand_back(self.previous)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<Lock {self.info.environment}/{self.info.block} {state}>"


_HELD: dict[tuple[str, str], LockInfo] = {}
_HELD_LOCK = threading.Lock()


def held_lock(environment: str, block: str) -> LockInfo | None:
    """The lock this process holds on (environment, block), if any."""
    with _HELD_LOCK:
        return _HELD.get((environment, block))


def worker_environment(environment: str, block: str) -> dict[str, str]:
    """What to add to the environment of a process working under this process's lock of
    (environment, block): ``{WORKER_ENV: token}``, or nothing when no lock is held."""
    info = held_lock(environment, block)
    return {WORKER_ENV: info.token} if info is not None and info.token else {}


def lock_workers(token: str) -> list[int]:
    """Pids of the live processes of this host working under the lock ``token`` (from
    ``/proc/PID/environ``; processes of other users cannot be read and are not ours)."""
    if not token:
        return []
    wanted = f"{WORKER_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


class LockBusyError(LockHeldError):
    """The lock's holder died, but processes it started still work on the deployment."""

    def __init__(self, environment: str, block: str, holder: LockInfo, workers: list[int],
                 *, waited: float) -> None:
        InfrablocksError.__init__(
            self,
            f"block {block!r} in environment {environment!r}: the `{holder.operation}` of "
            f"{holder.holder} (pid {holder.pid}, since {holder.since}) died, but the "
            f"Terraform it started still runs (pid {', '.join(map(str, workers))}) after "
            f"{waited:.0f}s of waiting; nothing was changed",
            hint="let it finish (it writes its state), then run the command again; or wait "
                 "longer with --lock-timeout SECONDS")
        self.environment = environment
        self.block = block
        self.holder = holder
        self.workers = workers


class LockSource(Protocol):
    """What :func:`acquire_waiting` needs of a state backend (``StateBackend.acquire_lock``;
    a protocol here, so that this module does not import the backends that import it)."""

    def acquire_lock(self, environment: str, block: str, operation: str, *,
                     wait: float = 0.0) -> Lock: ...


def acquire_waiting(backend: LockSource, environment: str, block: str, operation: str, *,
                    timeout: float = DEFAULT_LOCK_TIMEOUT,
                    say: Callable[[str], None] | None = None,
                    cancelled: Callable[[], bool] | None = None) -> Lock:
    """The lock of (environment, block), waiting up to ``timeout`` seconds for it.

    While it waits it says once who holds the lock and since when. A lock whose holder died is
    taken over (``Lock.note`` says so), but only once the processes that holder started under
    it (its Terraform, finishing an apply on its own) have exited, so that nothing else writes
    the deployment meanwhile; if they outlive ``timeout``, :class:`LockBusyError` (the lock is
    released again, nothing was written). ``LockHeldError`` when a live holder keeps it past
    ``timeout``. ``cancelled()`` is polled: True ends the wait with the last error.
    """
    say = say or (lambda text: None)
    deadline = Deadline(max(0.0, timeout))
    announced: list[LockInfo] = []
    refused: list[LockHeldError] = []

    def attempt() -> Lock | None:
        try:
            return backend.acquire_lock(environment, block, operation)
        except LockHeldError as exc:
            refused[:] = [exc]
            holder = exc.holder
            if holder is not None and holder not in announced and not deadline.expired():
                announced.append(holder)
                say(f"waiting up to {timeout:.0f}s for the lock of {block}: held by "
                    f"{holder.describe()}")
            return None

    def stop_waiting() -> bool:
        return cancelled is not None and cancelled()

    taken = poll(attempt, lambda got: got is not None or stop_waiting(), timeout=deadline,
                 interval=LOCK_POLL_SECONDS).value
    if taken is None:
        raise refused[0]
    lock = taken
    previous = lock.previous
    if previous is None or previous.host != socket.gethostname():
        return lock
    workers = lock_workers(previous.token)
    if not workers:
        return lock
    say(f"the `{previous.operation}` of {previous.holder} (pid {previous.pid}) died holding "
        f"the lock of {block}; waiting up to {deadline.remaining():.0f}s for the "
        f"Terraform it left running (pid {', '.join(map(str, workers))})")
    left = poll(lambda: lock_workers(previous.token), lambda pids: not pids or stop_waiting(),
                timeout=deadline, interval=LOCK_POLL_SECONDS)
    if left.value:
        lock.hand_back()
        raise LockBusyError(environment, block, previous, left.value, waited=left.elapsed)
    return lock


# -- the local implementation ----------------------------------------------------------------


def acquire_file_lock(lock_path: Path, info: LockInfo, *, wait: float = 0.0) -> Lock:
    """Lock ``lock_path`` (``fcntl.flock``) and describe the holder in ``lock_path.json``.

    The kernel drops an flock when its holder dies, so a dead holder never blocks anyone; the
    description it leaves behind is how we notice it died while holding the lock — the new
    :class:`Lock` then carries a ``note`` naming it. ``wait`` > 0 retries until that many
    seconds have passed before raising :class:`LockHeldError`.
    """
    private_dir(lock_path.parent)
    info_path = lock_path.with_name(lock_path.name + ".json")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            retry(lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                  retry_on=BlockingIOError, timeout=wait, interval=LOCK_POLL_SECONDS)
        except BlockingIOError:
            raise LockHeldError(info.environment, info.block, _read_info(info_path),
                                where=str(lock_path)) from None
    except BaseException:
        os.close(fd)
        raise

    note = None
    previous = _read_info(info_path)
    if previous is not None or info_path.exists():
        who = previous.describe() if previous else "an unknown process"
        note = (f"took over the lock of {info.environment}/{info.block} left by {who}, "
                "which ended without releasing it")
    write_private_file(info_path, info.dumps())

    def release() -> None:
        try:
            info_path.unlink(missing_ok=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def hand_back(holder: LockInfo) -> None:
        try:
            write_private_file(info_path, holder.dumps())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    return Lock(info, release, note=note, previous=previous, hand_back=hand_back)


def read_file_lock_holder(lock_path: Path) -> LockInfo | None:
    """The current holder of a local lock, or None when it is free."""
    if not lock_path.exists():
        return None
    fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(lock_path.with_name(lock_path.name + ".json"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_info(info_path: Path) -> LockInfo | None:
    try:
        return LockInfo.loads(info_path.read_bytes())
    except FileNotFoundError:
        return None

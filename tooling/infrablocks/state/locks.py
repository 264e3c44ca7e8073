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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infrablocks.errors import InfrablocksError
from infrablocks.private_files import private_dir, write_private_file
from infrablocks.processes import is_alive, start_time
from infrablocks.state.records import current_identity, utc_now_iso
from infrablocks.waiting import retry

LOCK_POLL_SECONDS = 0.2


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

    @classmethod
    def for_this_process(cls, environment: str, block: str, operation: str) -> LockInfo:
        pid = os.getpid()
        return cls(environment=environment, block=block, operation=operation,
                   holder=current_identity(), host=socket.gethostname(), pid=pid,
                   pid_start=start_time(pid), since=utc_now_iso())

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
                       since=str(data["since"]))
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
    """A held lock; a context manager. ``note`` says when a stale lock was taken over."""

    def __init__(self, info: LockInfo, release: Callable[[], None], *,
                 note: str | None = None) -> None:
        self.info = info
        self.note = note
        self._release = release
        self._released = False

    @property
    def held(self) -> bool:
        return not self._released

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<Lock {self.info.environment}/{self.info.block} {state}>"


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

    return Lock(info, release, note=note)


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

"""The machine-wide subnet table: which /24 of 127.42.0.0/16 each environment's instances use.

Every checkout of every repository on this machine (for this user) allocates from one table, so
two checkouts never hand the same addresses to two local clouds at once. The table is a JSON
file under a file lock in the user's state directory:

- ``$INFRABLOCKS_STATE_DIR`` when set (a shared directory for several users or CI jobs);
- else ``$XDG_STATE_HOME/infrablocks`` or ``~/.local/state/infrablocks`` (platformdirs);
- else, when that is not writable, ``$XDG_RUNTIME_DIR/infrablocks``, else
  ``/tmp/infrablocks-<uid>`` (0700, owned by the user, never a symlink).

Shape (version 2)::

    {"version": 2, "environments": {
        "/home/me/repo/.infrablocks/state/t-1a2b3c": {
            "subnet": "127.42.100.0/24", "environment": "t-1a2b3c",
            "checkout": "/home/me/repo", "state": "/home/me/repo/.infrablocks/state/t-1a2b3c",
            "pinned": false, "since": "2026-11-30T08:00:00Z",
            "holder": {"pid": 4242, "started": 123456, "host": "box"}}}}

The owner key is where the environment's state lives (:func:`owner_key`): for the local backend
that is the checkout's state directory and the environment, so it stands for "checkout +
environment"; two checkouts sharing one S3 state share the environment, and so its subnet.

An entry is **stale**, and its subnet is reclaimed by the next allocation that wants it, when its
checkout is gone (the directory no longer exists), or when the process that last claimed it is
gone *and* the environment has no state *and* no address of the subnet is bound *and* no saved
plan made on it (``doit plan --out FILE``: the entry's ``saved_plan``) still exists. A command that
claims a subnet refreshes the holder, so an environment being created (no state yet) is never
taken from under it. A holder on another host (a home directory shared over NFS) is never
presumed dead.

Bound addresses come from psutil (``/proc/net/tcp{,6}``, ``udp{,6}``): only the current network
namespace is visible, which is what matters (addresses collide only inside one namespace).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "INFRABLOCKS_STATE_DIR"
TABLE_FILE = "subnets.json"
LOCK_FILE = "subnets.lock"
TABLE_VERSION = 2
APP_NAME = "infrablocks"


# -- where the table lives ------------------------------------------------------------------------

def _usable_dir(path: Path, *, private_tmp: bool = False) -> Path | None:
    """``path`` created (0700) if missing; None when it cannot be written (or, for a directory
    in a shared /tmp, when it is not ours: a symlink, another owner, or open to others)."""
    try:
        if private_tmp:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            info = os.lstat(path)
            if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
                    or info.st_mode & 0o077):
                return None
        else:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A probe of its own (several threads of one process may ask at once).
        descriptor, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(descriptor)
        os.unlink(probe)
    except OSError:
        return None
    return path


def state_dir_candidates() -> list[tuple[Path, bool]]:
    """(directory, is-in-a-shared-tmp) in the order they are tried."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return [(Path(explicit), False)]
    candidates: list[tuple[Path, bool]] = []
    try:
        import platformdirs

        candidates.append((Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)), False))
    except (ImportError, KeyError, RuntimeError):  # no HOME and no passwd entry
        pass
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append((Path(runtime) / APP_NAME, False))
    candidates.append((Path("/tmp") / f"{APP_NAME}-{os.getuid()}", True))
    return candidates


def machine_state_dir() -> Path:
    """The first usable directory of :func:`state_dir_candidates` (see the module docstring)."""
    from infrablocks.errors import InfrablocksError

    tried = []
    for path, shared_tmp in state_dir_candidates():
        usable = _usable_dir(path, private_tmp=shared_tmp)
        if usable is not None:
            return usable
        tried.append(str(path))
    raise InfrablocksError("no writable directory for the machine-wide subnet table "
                           f"(tried {', '.join(tried)})",
                           hint=f"set {STATE_DIR_ENV} to a directory you can write")


# -- bound addresses --------------------------------------------------------------------------

def bound_addresses() -> set[ipaddress.IPv4Address]:
    """IPv4 addresses some socket of this network namespace is bound to (TCP or UDP, any
    state; IPv4-mapped IPv6 included). Wildcard binds (0.0.0.0) name no address."""
    import psutil

    found: set[ipaddress.IPv4Address] = set()
    for connection in psutil.net_connections(kind="inet"):
        if not connection.laddr:
            continue
        text = connection.laddr.ip.removeprefix("::ffff:")
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(text)
            if isinstance(address, ipaddress.IPv4Address) and not address.is_unspecified:
                found.add(address)
    return found


def bound_in(subnet: str, bound: Iterable[ipaddress.IPv4Address]) -> list[str]:
    network = ipaddress.ip_network(subnet)
    return sorted((str(a) for a in bound if a in network),
                  key=lambda a: ipaddress.ip_address(a))


# -- entries --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    """The process that last claimed an entry (pid, start time in clock ticks, host)."""

    pid: int
    started: int | None
    host: str

    @classmethod
    def current(cls) -> Holder:
        from infrablocks.processes import start_time

        return cls(os.getpid(), start_time(os.getpid()), socket.gethostname())

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another machine's process: never presumed dead
        from infrablocks.processes import is_alive

        return is_alive(self.pid, self.started)


@dataclass
class Entry:
    subnet: str
    environment: str
    checkout: str
    state: str | None           # a local directory to look for state in, or None (remote)
    pinned: bool = False
    since: str = ""
    holder: Holder | None = None
    saved_plan: str | None = None   # a saved plan (`doit plan --out`) made on this subnet

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["holder"] = asdict(self.holder) if self.holder else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        holder = data.get("holder")
        return cls(subnet=str(data["subnet"]), environment=str(data.get("environment", "")),
                   checkout=str(data.get("checkout", "")), state=data.get("state"),
                   pinned=bool(data.get("pinned", False)), since=str(data.get("since", "")),
                   holder=Holder(int(holder["pid"]), holder.get("started"),
                                 str(holder.get("host", ""))) if holder else None,
                   saved_plan=str(data["saved_plan"]) if data.get("saved_plan") else None)

    def describe(self) -> str:
        return f"environment {self.environment!r} of {self.checkout}"

    def waits_for_apply(self) -> bool:
        """A saved plan made on this subnet still exists: `doit apply` of it needs the same
        subnet, so the claim holds although nothing is deployed yet."""
        return bool(self.saved_plan) and Path(str(self.saved_plan)).exists()

    def stale_reason(self, bound: Iterable[ipaddress.IPv4Address]) -> str | None:
        """Why this entry no longer holds its subnet, or None while it does."""
        if not Path(self.checkout).is_dir():
            return f"its checkout {self.checkout} is gone"
        if self.holder is not None and self.holder.alive():
            return None
        if self.waits_for_apply():
            return None
        if self.state is None or local_state_exists(Path(self.state)):
            return None
        if bound_in(self.subnet, bound):
            return None
        return f"{self.describe()} has no state and nothing uses its addresses"


def local_state_exists(env_dir: Path) -> bool:
    """Whether a local backend's environment directory holds any block's state or record."""
    from infrablocks.state.local import holds_deployment

    if not env_dir.is_dir():
        return False
    return any(block.is_dir() and holds_deployment(block) for block in env_dir.iterdir())


@dataclass
class Table:
    """The decoded table: owner key → entry."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def owner_of(self, subnet: str) -> tuple[str, Entry] | None:
        return next(((k, e) for k, e in self.entries.items() if e.subnet == subnet), None)

    def taken(self) -> set[str]:
        return {e.subnet for e in self.entries.values()}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SubnetTable:
    """The machine-wide table file (``directory/subnets.json``), read and written under a lock.

    ``bound`` gives the bound addresses (default :func:`bound_addresses`; tests pass their own).
    """

    def __init__(self, directory: Path | None = None, *,
                 bound: Callable[[], set[ipaddress.IPv4Address]] | None = None) -> None:
        self._directory = Path(directory) if directory is not None else None
        self._directory_lock = threading.Lock()
        self.bound = bound or bound_addresses

    @property
    def directory(self) -> Path:
        with self._directory_lock:   # decided once per table, whichever thread asks first
            if self._directory is None:
                self._directory = machine_state_dir()
            return self._directory

    @property
    def path(self) -> Path:
        return self.directory / TABLE_FILE

    @contextlib.contextmanager
    def locked(self, *, write: bool = True) -> Iterator[Table]:
        """The table, exclusively; written back (atomically, 0600) if it changed — never with
        ``write=False`` (a read-only command's look: what it changes is discarded)."""
        from infrablocks.errors import InfrablocksError

        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                raw = json.loads(self.path.read_text() or "{}")
            except FileNotFoundError:
                raw = {}
            except ValueError as exc:
                raise InfrablocksError(f"{self.path}: not a JSON subnet table ({exc})",
                                       hint="move it away; environments re-claim their "
                                            "subnets on their next command") from None
            table = _decode(raw)
            before = json.dumps(_encode(table), sort_keys=True)
            yield table
            if not write:
                return
            after = _encode(table)
            if json.dumps(after, sort_keys=True) != before:
                from infrablocks.private_files import write_private_file

                write_private_file(self.path, (json.dumps(after, indent=2, sort_keys=True)
                                               + "\n").encode())


def _decode(raw: Any) -> Table:
    table = Table()
    if isinstance(raw, dict) and raw.get("version") == TABLE_VERSION:
        for key, data in (raw.get("environments") or {}).items():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                table.entries[str(key)] = Entry.from_json(data)
    return table


def _encode(table: Table) -> dict[str, Any]:
    return {"version": TABLE_VERSION,
            "environments": {k: e.to_json() for k, e in sorted(table.entries.items())}}

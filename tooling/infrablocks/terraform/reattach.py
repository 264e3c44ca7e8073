"""One provider process per run, shared by every Terraform command (``TF_REATTACH_PROVIDERS``).

Terraform starts each provider itself, several times per command (go-plugin's managed mode):
for the local-cloud provider, written in Python, that is ~0.2 s of interpreter, imports and
TLS set-up per start, 3-4 starts per plan or apply — most of a small block's apply. Terraform
can instead attach to a provider that is already running: ``TF_REATTACH_PROVIDERS`` maps a
provider source to its address (go-plugin's unmanaged mode, which Terraform's own SDK test
harness uses; Terraform neither installs, starts nor stops such a provider).
:class:`SharedProvider` is that provider's process, seen from the tool:

- started on first use (:meth:`SharedProvider.attach`), or ahead of it (:meth:`prestart`,
  while ``terraform init`` runs), in its own session, so that a Ctrl-C on the terminal reaches
  only the tool, which stops Terraform gracefully first;
- one per platform object of a run, for every block, command and thread of that run;
- only for working directories whose dependency lock file names its provider
  (:meth:`SharedProvider.uses`), and only for the commands that talk to providers
  (:data:`PROVIDER_COMMANDS`); ``terraform init`` still installs the provider from the mirror,
  so the lock file and ``.terraform/`` stay what a plain ``terraform`` in the working
  directory needs;
- restarted by the next command if it died (the command running at that moment fails, and its
  error says so: see :meth:`Lease.ended`);
- stopped by the tool, by its own pid, when the run ends (:func:`stop_all`: the command layer,
  also after a failure or Ctrl-C; ``Workspace.close``; and, as a safety net, when the object
  is dropped or the interpreter exits): SIGTERM, the calls in flight finish, then it exits;
  SIGKILL only if it has not after ``STOP_TIMEOUT`` seconds;
- never left behind: its stdin is a pipe only the tool holds. When the tool dies without
  stopping it, the provider sees end of file, keeps serving while calls keep coming (a
  Terraform the dead tool left finishing on its own), and exits once idle.

The serving process prints one line, ``{"reattach": {SOURCE: {...}}}``, once it listens
(see ``infrablocks.cloud.local.provider_serve``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infrablocks.errors import InfrablocksError

__all__ = ["PROVIDER_COMMANDS", "REATTACH_ENV", "Lease", "SharedProvider",
           "SharedProviderError", "reattach_environment", "stop_all"]

REATTACH_ENV = "TF_REATTACH_PROVIDERS"
# The Terraform commands that start providers (the others read state or files only).
PROVIDER_COMMANDS = frozenset({"plan", "apply", "destroy", "refresh", "show", "validate",
                               "import", "console", "providers", "state show"})
START_TIMEOUT = 60.0
# The server lets calls in flight finish for up to 60 s after SIGTERM.
STOP_TIMEOUT = 75.0
LOCK_FILE = ".terraform.lock.hcl"


class SharedProviderError(InfrablocksError):
    """The shared provider process could not be started."""


@dataclass(frozen=True)
class Lease:
    """One command's use of a shared provider: which process served it."""

    provider: SharedProvider
    process: subprocess.Popen[bytes]
    config: Mapping[str, Any]
    log_path: Path | None = None

    def ended(self) -> str | None:
        """How the serving process ended, if it has since the command started; else None."""
        code = self.process.poll()
        if code is None:
            return None
        how = (f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}")
        return (f"the shared {self.provider.source} provider process (pid {self.process.pid}) "
                f"ended during the command ({how}); Terraform kept the state of what it had "
                f"finished, and the next command starts a new provider process "
                f"(its log: {self.log_path})")


class SharedProvider:
    """The provider ``source`` served for a whole run by ``argv`` (see the module docstring).

    ``env``: the serving process's whole environment (it is not Terraform's child, so nothing
    of Terraform's environment reaches it). ``log_dir``: where its stderr is written, one
    file per process (0600).
    """

    def __init__(self, source: str, argv: Sequence[str], env: Mapping[str, str],
                 log_dir: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        self.source = source
        self.argv = list(argv)
        self.env = dict(env)
        self.log_dir = Path(log_dir)
        self.start_timeout = start_timeout
        self.log_path: Path | None = None
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], SharedProvider] | None = None
        self._config: dict[str, Any] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._uses: dict[Path, tuple[float, bool]] = {}

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"SharedProvider({self.source!r}, pid={pid})"

    @property
    def pid(self) -> int | None:
        """The serving process's pid while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # -- which working directories -------------------------------------------------------------

    def uses(self, workdir: Path) -> bool:
        """Whether ``workdir``'s dependency lock file (written by ``terraform init``) names
        this provider."""
        path = Path(workdir) / LOCK_FILE
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return False
        known = self._uses.get(path)
        if known is not None and known[0] == mtime:
            return known[1]
        try:
            used = f'provider "{self.source}"' in path.read_text()
        except OSError:
            return False
        self._uses[path] = (mtime, used)
        return used

    def may_use(self, workdir: Path) -> bool:
        """Whether ``workdir``'s configuration names this provider (before ``init``)."""
        if self.uses(workdir):
            return True
        with contextlib.suppress(OSError):
            for path in Path(workdir).glob("*.tf"):
                if self.source in path.read_text():
                    return True
        return False

    # -- lifetime ------------------------------------------------------------------------------

    def prestart(self) -> None:
        """Start the process if it is not running, without waiting for it to serve."""
        with self._lock:
            if not self._closed and not self._running():
                self._spawn()

    def attach(self) -> Lease | None:
        """The running process (started, or restarted after a crash, if needed) and its
        ``TF_REATTACH_PROVIDERS`` entry; None once :meth:`stop` was called (Terraform then
        starts the provider itself, as without sharing).

        Raises :class:`SharedProviderError` when it cannot be started.
        """
        with self._lock:
            if self._closed:
                return None
            if not self._running():
                self._spawn()
            process = self._process
            assert process is not None
            if self._config is None:
                try:
                    self._config = self._handshake(process)
                except BaseException:
                    if self._process is process:   # e.g. Ctrl-C while it started: not half
                        self._abandon(process)     # read and left for the next attach
                    raise
            return Lease(self, process, self._config, self.log_path)

    def stop(self) -> None:
        """Stop the process (SIGTERM: the calls in flight finish first) and wait for it;
        SIGKILL after ``STOP_TIMEOUT`` s. Later :meth:`attach` calls return None."""
        with self._lock:
            self._closed = True
            finalizer = self._finalizer
        if finalizer is not None:
            finalizer()   # _terminate(process), once
        _remove_socket_dir(self._config)   # left only when it had to be SIGKILLed
        _LIVE.discard(self)

    # -- internals -----------------------------------------------------------------------------

    def _running(self) -> bool:
        process = self._process
        if process is None:
            return False
        if process.poll() is None:
            return True
        _remove_socket_dir(self._config)   # a killed server could not remove it itself
        self._forget()   # crashed or killed: the next attach starts a new one
        self._config = None
        return False

    def _spawn(self) -> None:
        from infrablocks.private_files import open_private, private_dir

        private_dir(self.log_dir, base=self.log_dir.parent)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = self.source.rsplit("/", 1)[-1]
        self.log_path = self.log_dir / f"{stamp}-provider-{name}-{os.getpid()}.log"
        with open_private(self.log_path, "a") as log:
            log.write(f"# {' '.join(self.argv)}\n# started: {datetime.now(UTC).isoformat()}\n")
            log.flush()
            try:
                process = subprocess.Popen(
                    self.argv, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=log, cwd="/",
                    # Own session: a Ctrl-C on the terminal must not reach it while Terraform
                    # is still finishing the operations in flight.
                    start_new_session=True)
            except OSError as exc:
                raise SharedProviderError(
                    f"cannot start the {self.source} provider ({self.argv[0]}): "
                    f"{exc.strerror or exc}") from None
        self._process = process
        self._config = None
        self.starts += 1
        # Stopped by stop(), or when this object is dropped, or at the interpreter's exit.
        self._finalizer = weakref.finalize(self, _terminate, process)
        _LIVE.add(self)

    def _handshake(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        """Read the serving process's reattach line (or fail with what it said)."""
        assert process.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        data = b""
        fd = process.stdout.fileno()
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._abandon(process)
                raise SharedProviderError(
                    f"the {self.source} provider did not start serving within "
                    f"{self.start_timeout:g}s", hint=f"its log: {self.log_path}")
            chunk = os.read(fd, 65536)
            if not chunk:
                process.wait()
                raise SharedProviderError(
                    f"the {self.source} provider exited before serving (exit code "
                    f"{process.returncode})" + self._log_tail(),
                    hint=f"its log: {self.log_path}")
            data += chunk
        _close_stdout(process)
        try:
            config = json.loads(data.split(b"\n", 1)[0])["reattach"]
            if not isinstance(config, dict) or self.source not in config:
                raise ValueError(f"no entry for {self.source}")
        except (ValueError, KeyError, TypeError) as exc:
            self._abandon(process)
            raise SharedProviderError(
                f"the {self.source} provider printed no valid reattach line ({exc})",
                hint=f"its log: {self.log_path}") from None
        return dict(config)

    def _abandon(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        self._forget()

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer()   # the process has ended: only its pipes are closed
        self._process = None
        self._config = None
        _LIVE.discard(self)

    def _log_tail(self, lines: int = 15) -> str:
        if self.log_path is None:
            return ""
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        tail = [line for line in tail if not line.startswith("# ")]
        return (":\n" + "\n".join(f"    {line}" for line in tail)) if tail else ""


def reattach_environment(leases: Sequence[Lease]) -> dict[str, str]:
    """``{"TF_REATTACH_PROVIDERS": JSON}`` for the leased providers (empty for none)."""
    merged: dict[str, Any] = {}
    for lease in leases:
        merged.update(lease.config)
    return {REATTACH_ENV: json.dumps(merged, sort_keys=True)} if merged else {}


_LIVE: weakref.WeakSet[SharedProvider] = weakref.WeakSet()


def stop_all() -> None:
    """Stop every shared provider this process started (the end of a run)."""
    for provider in list(_LIVE):
        provider.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the calls in flight finish first), wait, SIGKILL after ``STOP_TIMEOUT`` s."""
    try:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        _close(process)


def _remove_socket_dir(config: dict[str, Any] | None) -> None:
    """Remove the socket and the private temporary directory of a provider process that has
    ended (``provider_serve`` removes them itself unless it was killed). Only a directory the
    server made (``infrablocks-provider-*``) holding nothing but its socket is removed."""
    if not config:
        return
    for entry in config.values():
        address = str((entry.get("Addr") or {}).get("String") or "")
        directory = os.path.dirname(address)
        if not os.path.basename(directory).startswith("infrablocks-provider-"):
            continue
        with contextlib.suppress(OSError):
            os.unlink(address)
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _close(process: subprocess.Popen[bytes]) -> None:
    """Close the tool's ends of the process's pipes (its stdin: the lifeline)."""
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _close_stdout(process: subprocess.Popen[bytes]) -> None:
    if process.stdout is not None:
        with contextlib.suppress(OSError):
            process.stdout.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

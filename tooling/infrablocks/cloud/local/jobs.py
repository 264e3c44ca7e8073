"""Jobs on the local cloud's scheduler: supervisord programs driven over XML-RPC.

The nomad block runs Debian's supervisord on its node with ``[include] files = JOBS_DIR/*.conf``
and its XML-RPC API on ``http://NODE_IP:9001/RPC2``. A job is one ``[program:NAME]`` file in
that directory: submitting writes the file, then ``reloadConfig()`` + ``addProcessGroup(NAME)``
start it; removing stops it, removes the group and deletes the file. The provider's
``localcloud_job`` resource (provider_jobs.py) is a thin layer over :class:`Scheduler`.

Only the standard library is used, so the provider stays cheap to start.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import shlex
import xmlrpc.client
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from infrablocks.errors import ConfigError, InfrablocksError
from infrablocks.private_files import write_atomic
from infrablocks.waiting import poll

JOB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG_SUBDIR = "logs"
CONFIG_SUFFIX = ".conf"

# supervisord process states (supervisor.states.ProcessStates names).
RUNNING_STATES = frozenset({"RUNNING"})
STARTING_STATES = frozenset({"STARTING", "BACKOFF"})
FAILED_STATES = frozenset({"FATAL", "EXITED", "STOPPED", "UNKNOWN"})

# supervisor.xmlrpc.Faults codes the scheduler client handles.
FAULT_BAD_NAME = 10
FAULT_NOT_RUNNING = 70
FAULT_ALREADY_ADDED = 90
FAULT_STILL_RUNNING = 91


class JobError(InfrablocksError):
    """A job could not be submitted, read or removed; the message names the job and why."""


class SchedulerUnreachable(JobError):  # noqa: N818 - reads as a state, like NotFound
    """Nothing answers at the scheduler's address (the node is down or gone)."""


@dataclass(frozen=True)
class JobSpec:
    """What to run: the fields of a ``localcloud_job``."""

    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    directory: str | None = None
    autorestart: bool = True

    def __post_init__(self) -> None:
        validate_job(self)


@dataclass(frozen=True)
class JobStatus:
    """A job as supervisord reports it (``getProcessInfo``)."""

    name: str
    state: str          # RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED, …
    pid: int
    description: str
    log_path: str


def validate_job(spec: JobSpec) -> None:
    """Raise ConfigError naming every field supervisord could not take as given."""
    problems = []
    if not isinstance(spec.name, str) or not JOB_NAME_RE.match(spec.name):
        problems.append(f"name {spec.name!r}: use 1-63 lower-case letters, digits, '_', '.', '-'"
                        " starting with a letter or digit")
    if not spec.command or not all(isinstance(a, str) for a in spec.command):
        problems.append("command: give a non-empty list of strings (program and arguments)")
    elif any("\n" in a or "\r" in a for a in spec.command):
        problems.append("command: arguments cannot contain line breaks")
    for key, value in spec.environment.items():
        problem = _environment_problem(key, value)
        if problem:
            problems.append(f"environment.{key}: {problem}")
    if spec.directory is not None and not Path(spec.directory).is_absolute():
        problems.append(f"directory {spec.directory!r}: must be an absolute path")
    if problems:
        raise ConfigError(f"job {spec.name!r} is not valid", problems=problems)


def _environment_problem(key: str, value: str) -> str | None:
    if not ENV_KEY_RE.match(str(key)):
        return "variable names are letters, digits and '_', not starting with a digit"
    if not isinstance(value, str):
        return "values are strings"
    if "\n" in value or "\r" in value:
        return "values cannot contain line breaks"
    # supervisord's KEY="v",… parser has no escapes: one kind of quote may appear inside.
    if '"' in value and "'" in value:
        return "a value cannot contain both ' and \" (supervisord cannot quote it)"
    if value and (value[0] in "'\"" or value[-1] in "'\""):
        return "a value cannot start or end with a quote character"
    return None


def _supervisor_escape(text: str) -> str:
    """supervisord expands ``%(name)s`` in option values: a literal ``%`` is written ``%%``."""
    return text.replace("%", "%%")


def _quote_env_value(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'


def config_path(jobs_dir: Path | str, name: str) -> Path:
    return Path(jobs_dir) / f"{name}{CONFIG_SUFFIX}"


def log_path(jobs_dir: Path | str, name: str) -> Path:
    return Path(jobs_dir) / LOG_SUBDIR / f"{name}.log"


def render_program(spec: JobSpec, jobs_dir: Path | str) -> str:
    """The ``[program:NAME]`` section supervisord loads for ``spec``."""
    lines = [
        f"; managed by infrablocks (localcloud_job {spec.name}); do not edit",
        f"[program:{spec.name}]",
        f"command={_supervisor_escape(shlex.join(spec.command))}",
    ]
    if spec.environment:
        pairs = ",".join(f"{key}={_quote_env_value(value)}"
                         for key, value in sorted(spec.environment.items()))
        lines.append(f"environment={_supervisor_escape(pairs)}")
    if spec.directory:
        lines.append(f"directory={_supervisor_escape(spec.directory)}")
    log = _supervisor_escape(str(log_path(jobs_dir, spec.name)))
    lines += [
        "autostart=true",
        f"autorestart={'true' if spec.autorestart else 'false'}",
        "startsecs=1",
        "startretries=3",
        "stopsignal=TERM",
        "stopwaitsecs=10",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={log}",
        "stdout_logfile_maxbytes=5MB",
        "stdout_logfile_backups=2",
    ]
    return "\n".join(lines) + "\n"


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: tuple[str, dict[str, str]] | str
                        ) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class Scheduler:
    """Client of one supervisord node (``url`` like ``http://127.42.7.31:9001``)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parsed = urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ConfigError(f"scheduler_url {url!r} is not valid: expected "
                              "http://HOST:PORT (the nomad block's api_url)")
        self.url = url.rstrip("/")
        self._proxy = xmlrpc.client.ServerProxy(f"{self.url}/RPC2",
                                                transport=_TimeoutTransport(timeout))

    def _call(self, method: str, *args: object) -> object:
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except (ConnectionRefusedError, TimeoutError) as error:
            raise SchedulerUnreachable(
                f"scheduler {self.url} does not answer ({error.__class__.__name__}); "
                "is the nomad node running?") from error
        except OSError as error:
            raise SchedulerUnreachable(f"scheduler {self.url}: {error}") from error
        except xmlrpc.client.ProtocolError as error:
            raise JobError(f"scheduler {self.url} refused {method}: "
                           f"HTTP {error.errcode} {error.errmsg}") from error

    def state(self) -> str:
        """supervisord's own state name (RUNNING when it serves)."""
        return str(self._call("getState")["statename"])  # type: ignore[index]

    def wait_serving(self, *, timeout: float = 30.0) -> None:
        """Wait until supervisord answers and is RUNNING (a node that was just created may
        still be starting); raise SchedulerUnreachable after ``timeout``."""
        def problem() -> str | None:
            try:
                return None if self.state() == "RUNNING" else "supervisord is not RUNNING yet"
            except SchedulerUnreachable as error:
                return str(error)

        polled = poll(problem, lambda seen: seen is None, timeout=timeout, interval=0.5)
        if not polled.ok:
            raise SchedulerUnreachable(f"{polled.value} (waited {timeout:.0f}s)")

    def status(self, name: str) -> JobStatus | None:
        """The job's status, or None when the scheduler has no such job."""
        try:
            info = self._call("getProcessInfo", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == FAULT_BAD_NAME:
                return None
            raise JobError(f"job {name}: {fault.faultString}") from fault
        assert isinstance(info, dict)
        return JobStatus(name=name, state=str(info["statename"]), pid=int(info["pid"]),
                         description=str(info.get("description", "")),
                         log_path=str(info.get("stdout_logfile", "")))

    def submit(self, spec: JobSpec, jobs_dir: Path | str, *,
               timeout: float = 30.0) -> JobStatus:
        """Write the job's file, load it and wait until it runs (raise JobError otherwise)."""
        jobs_dir = Path(jobs_dir)
        self.wait_serving(timeout=timeout)
        if not jobs_dir.is_dir():
            raise JobError(f"job {spec.name}: jobs_dir {jobs_dir} does not exist "
                           "(the nomad block's jobs_dir output, on the scheduler node)")
        (jobs_dir / LOG_SUBDIR).mkdir(exist_ok=True)
        target = config_path(jobs_dir, spec.name)
        write_atomic(target, render_program(spec, jobs_dir))  # 0600: may hold credentials
        self._call("reloadConfig")
        for attempt in range(2):
            try:
                self._call("addProcessGroup", spec.name)
                break
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != FAULT_ALREADY_ADDED or attempt:
                    raise JobError(f"job {spec.name}: supervisord could not load {target}: "
                                   f"{fault.faultString}") from fault
                # A job of that name is loaded (e.g. left failed): replace it with this one.
                self._stop_and_unload(spec.name)
        return self.wait_running(spec.name, jobs_dir, timeout=timeout)

    def wait_running(self, name: str, jobs_dir: Path | str, *,
                     timeout: float = 30.0) -> JobStatus:
        def settled(status: JobStatus | None) -> bool:   # running, or failed for good
            return status is None or status.state in RUNNING_STATES | FAILED_STATES

        status = poll(lambda: self.status(name), settled, timeout=timeout, interval=0.2).value
        if status is not None and status.state in RUNNING_STATES:
            return status
        state = "missing" if status is None else status.state
        raise JobError(f"job {name} did not start (state {state})\n"
                       f"{_log_tail(log_path(jobs_dir, name))}")

    def remove(self, name: str, jobs_dir: Path | str) -> None:
        """Stop the job, unload it and delete its file. A missing job is not an error; an
        unreachable scheduler only loses the file (its node, and the job, are gone)."""
        target = config_path(jobs_dir, name)
        with contextlib.suppress(SchedulerUnreachable):
            self._stop_and_unload(name)
        target.unlink(missing_ok=True)
        with contextlib.suppress(SchedulerUnreachable):
            self._call("reloadConfig")

    def _stop_and_unload(self, name: str) -> None:
        for method, tolerated in (("stopProcess", (FAULT_BAD_NAME, FAULT_NOT_RUNNING)),
                                  ("removeProcessGroup", (FAULT_BAD_NAME,))):
            try:
                self._call(method, name)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode not in tolerated:
                    raise JobError(f"job {name}: {method} failed: {fault.faultString}") \
                        from fault


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no log at {path})"
    return "\n".join(f"  | {line}" for line in tail) or f"  (empty log {path})"


def job_spec(name: str, command: Sequence[str], environment: Mapping[str, str] | None = None,
             directory: str | None = None) -> JobSpec:
    """A validated JobSpec from the plain values a Terraform resource carries."""
    return JobSpec(name=name, command=tuple(command or ()), environment=dict(environment or {}),
                   directory=directory or None)

"""A thin subprocess layer over the Terraform CLI.

One process per command, run in the block's working directory with the tool's own CLI config
and a clean automation environment. Output goes to one log file per command (0600, in a 0700
directory; and, line by line, to an optional progress callback); JSON commands (``show -json``,
``output -json``) are read from stdout and never logged, since they hold sensitive values. A
failure raises ``TerraformError`` carrying Terraform's own ``Error:`` blocks and the log's path.

Secrets stay out of the working directory and the logs (see :mod:`infrablocks.terraform.workdir`):
the sensitive inputs of a prepared working directory reach every command as ``TF_VAR_``
environment variables, and saved plans (which embed every variable value) are written to the
deployment's private directory and removed once applied. What Terraform prints is logged with
those sensitive inputs masked (:class:`Redactor`): Terraform does not mask a provider-computed
attribute derived from a sensitive value.

Cancellation is graceful: ``stop()`` (or setting the ``cancel`` event) sends SIGINT, which makes
Terraform finish the resource operations in flight, write its state and exit.

Providers served once per run (``shared_providers``, :mod:`infrablocks.terraform.reattach`)
reach the commands that talk to providers through ``TF_REATTACH_PROVIDERS``; ``init`` installs
them from the mirror as usual. A command during which such a provider process died fails with
a line saying so (the next command starts a new one).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from infrablocks.errors import InfrablocksError
from infrablocks.private_files import open_private, private_dir
from infrablocks.terraform.binary import TerraformBinary
from infrablocks.terraform.diagnostics import summarize_errors
from infrablocks.terraform.plan import Plan
from infrablocks.terraform.reattach import (
    PROVIDER_COMMANDS,
    Lease,
    SharedProvider,
    SharedProviderError,
    reattach_environment,
)
from infrablocks.terraform.workdir import (
    BACKEND_CONFIG_FILE,
    init_reason,
    private_dir_of,
    record_init,
    terraform_variables_env,
)

DEFAULT_PLAN_FILE = ".infrablocks.tfplan"
# Variables that would redirect or alter what the driver relies on; the driver sets its own.
_DROPPED_ENV_PREFIXES = ("TF_CLI_ARGS",)
_DROPPED_ENV = {"TF_CLI_CONFIG_FILE", "TERRAFORM_CONFIG", "TF_DATA_DIR", "TF_INPUT",
                "TF_IN_AUTOMATION", "CHECKPOINT_DISABLE", "TF_REATTACH_PROVIDERS"}
_POLL = 0.1
_READER_GRACE = 10.0

ProgressCallback = Callable[[str], None]


class TerraformError(InfrablocksError):
    """A Terraform command failed. ``errors`` holds Terraform's own error text."""

    def __init__(self, message: str, *, command: str = "", exit_code: int | None = None,
                 log_path: Path | None = None, errors: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.returncode = exit_code
        self.log_path = log_path
        self.errors = errors


class TerraformCancelled(TerraformError):
    """The command was stopped on request (SIGINT); Terraform saved the state it reached."""


@dataclass(frozen=True)
class RunResult:
    command: str
    exit_code: int
    log_path: Path
    duration: float
    stdout: str = ""  # only for commands whose output is captured (JSON)
    stderr: str = ""


class Terraform:
    """Runs Terraform commands for one deployment (or any, when block/environment are unset).

    ``binary``: the executable (a ``TerraformBinary`` from ``find_terraform``, or a path).
    ``cli_config``: the tool's CLI config file (see ``cliconfig.write_cli_config``).
    ``log_dir``: where one log file per command is written.
    ``env_extra``: added to every process's environment (e.g. ``LOCALCLOUD_ROOT``).
    ``on_output``: called with each output line (without newline) of non-JSON commands.
    ``cancel``: when set, the running command is stopped gracefully and no new one starts.
    ``timeout``: seconds per command; past it the command is stopped like a cancel.
    ``shared_providers``: providers served once for the whole run
    (:class:`~infrablocks.terraform.reattach.SharedProvider`); the commands that talk to
    providers get them in ``TF_REATTACH_PROVIDERS`` in every working directory whose lock file
    names them, instead of Terraform starting them.
    """

    def __init__(self, binary: TerraformBinary | Path | str, cli_config: Path, log_dir: Path,
                 env_extra: Mapping[str, str] | None = None, *, block: str | None = None,
                 environment: str | None = None, on_output: ProgressCallback | None = None,
                 cancel: threading.Event | None = None, timeout: float | None = None,
                 shared_providers: Sequence[SharedProvider] = ()) -> None:
        self.executable = Path(binary.path if isinstance(binary, TerraformBinary) else binary)
        self.cli_config = Path(cli_config)
        self.log_dir = Path(log_dir)
        self.env_extra = dict(env_extra or {})
        self.block = block
        self.environment = environment
        self.on_output = on_output
        self.cancel = cancel if cancel is not None else threading.Event()
        self.timeout = timeout
        self.shared_providers = tuple(shared_providers)
        self._running: set[_Process] = set()
        self._lock = threading.Lock()

    def for_deployment(self, environment: str, block: str, *,
                       on_output: ProgressCallback | None = None) -> Terraform:
        """A driver sharing this one's settings and cancel event, labelled for (env, block)."""
        clone = Terraform(self.executable, self.cli_config, self.log_dir, self.env_extra,
                          block=block, environment=environment,
                          on_output=on_output if on_output is not None else self.on_output,
                          cancel=self.cancel, timeout=self.timeout,
                          shared_providers=self.shared_providers)
        return clone

    # -- commands ---------------------------------------------------------------------------

    def init(self, workdir: Path, backend_config: Mapping[str, object] | None = None,
             reconfigure: bool = False, upgrade: bool = False) -> RunResult:
        """``terraform init``; uses the workdir's ``.tfbackend`` file and ``backend_config``.

        Scalar ``backend_config`` values are passed as ``-backend-config=KEY=VALUE``; maps and
        lists go through a temporary ``.tfbackend`` file.
        """
        args = ["init", "-input=false", "-no-color"]
        if reconfigure:
            args.append("-reconfigure")
        if upgrade:
            args.append("-upgrade")
        if (workdir / BACKEND_CONFIG_FILE).is_file():
            args.append(f"-backend-config={BACKEND_CONFIG_FILE}")
        extra_file = workdir / ".infrablocks-init.tfbackend"
        structured = {k: v for k, v in (backend_config or {}).items()
                      if isinstance(v, Mapping | list | tuple)}
        for key, value in (backend_config or {}).items():
            if key not in structured:
                args.append(f"-backend-config={key}={_scalar(value)}")
        for shared in self.shared_providers:
            if shared.may_use(workdir):
                shared.prestart()   # it gets ready while init runs
        try:
            if structured:
                from infrablocks.terraform.hcl import hcl_attributes

                extra_file.write_text(hcl_attributes(structured))
                args.append(f"-backend-config={extra_file.name}")
            result = self._run(workdir, args)
        finally:
            extra_file.unlink(missing_ok=True)
        record_init(workdir, backend_config)
        return result

    def ensure_init(self, workdir: Path, backend_config: Mapping[str, object] | None = None
                    ) -> bool:
        """Run init only when needed (first time, backend or block files changed).

        A changed backend is re-initialised with ``-reconfigure`` (the state is not migrated).
        Returns whether init ran.
        """
        reason = init_reason(workdir, backend_config)
        if reason is None:
            return False
        self.init(workdir, backend_config, reconfigure=reason.startswith("backend"))
        return True

    def plan(self, workdir: Path, var_files: Sequence[Path | str] = (),
             targets: Sequence[str] = (), replace: Sequence[str] = (), destroy: bool = False,
             out: Path | None = None, refresh: bool = True, lock: bool = True) -> Plan:
        """``plan -detailed-exitcode -out`` then ``show -json`` of the saved plan.

        The saved plan holds every variable value, sensitive ones included: by default it is
        written to the deployment's private directory (the working directory's own only when
        it was not prepared by ``prepare_workdir``). Relative paths (``out``, ``var_files``)
        are relative to the working directory.
        ``lock=False`` plans without taking the state lock (``-lock=false``): a read-only plan
        that leaves no lock behind and does not wait for another run's (a local backend's lock
        would create the state file it locks).
        """
        plan_file = (workdir / out if out is not None
                     else (private_dir_of(workdir) or workdir) / DEFAULT_PLAN_FILE)
        args = ["plan", "-input=false", "-no-color", "-detailed-exitcode",
                f"-out={plan_file}"]
        if destroy:
            args.append("-destroy")
        if not refresh:
            args.append("-refresh=false")
        if not lock:
            args.append("-lock=false")
        args += _selection_args(var_files, targets, replace)
        result = self._run(workdir, args, ok_codes=(0, 2))
        shown = self._run(workdir, ["show", "-json", "-no-color", str(plan_file)], capture=True)
        data = _parse_json(shown, self._describe("show -json"))
        return Plan.from_json(data, plan_file=plan_file, has_changes=result.exit_code == 2)

    def apply(self, workdir: Path, plan_file: Path | Plan | None = None,
              var_files: Sequence[Path | str] = (), targets: Sequence[str] = (),
              replace: Sequence[str] = ()) -> RunResult:
        """Apply a saved plan (removed afterwards: applied or not, it is spent), or
        plan-and-apply with ``-auto-approve``."""
        if isinstance(plan_file, Plan):
            plan_file = plan_file.plan_file
        if plan_file is not None:
            if var_files or targets or replace:
                raise ValueError("a saved plan already fixes variables, targets and replacements")
            saved = workdir / plan_file
            try:
                return self._run(workdir, ["apply", "-input=false", "-no-color", str(saved)])
            finally:
                saved.unlink(missing_ok=True)
        args = ["apply", "-input=false", "-no-color", "-auto-approve"]
        return self._run(workdir, args + _selection_args(var_files, targets, replace))

    def destroy(self, workdir: Path, var_files: Sequence[Path | str] = (),
                targets: Sequence[str] = ()) -> RunResult:
        args = ["destroy", "-input=false", "-no-color", "-auto-approve"]
        return self._run(workdir, args + _selection_args(var_files, targets, ()))

    def output(self, workdir: Path) -> dict[str, dict[str, Any]]:
        """``output -json``: name → {"value", "type", "sensitive"} (sensitive values included)."""
        result = self._run(workdir, ["output", "-json", "-no-color"], capture=True)
        outputs: dict[str, dict[str, Any]] = _parse_json(result, self._describe("output -json"))
        return outputs

    def show_state(self, workdir: Path) -> dict[str, Any]:
        """``show -json`` of the current state (``{}``-like document when there is none)."""
        result = self._run(workdir, ["show", "-json", "-no-color"], capture=True)
        shown: dict[str, Any] = _parse_json(result, self._describe("show -json"))
        return shown

    def state_list(self, workdir: Path) -> list[str]:
        """Addresses in the state; empty when there is no state yet."""
        result = self._run(workdir, ["state", "list"], capture=True, ok_codes=(0, 1))
        if result.exit_code == 1:
            if "No state file was found" in result.stderr:
                return []
            self._fail(result, None, result.stderr.splitlines(keepends=True))
        return [line for line in result.stdout.splitlines() if line.strip()]

    def validate(self, workdir: Path) -> RunResult:
        return self._run(workdir, ["validate", "-no-color"])

    # -- cancellation -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the running command(s) to stop gracefully (SIGINT); later commands are refused."""
        self.cancel.set()
        self._interrupt_all()

    def _interrupt_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for process in running:
            process.interrupt("cancelled")

    # -- running ----------------------------------------------------------------------------

    def environment_for(self, workdir: Path | None = None) -> dict[str, str]:
        """The environment every Terraform process gets (in ``workdir``: with its sensitive
        inputs as ``TF_VAR_`` variables, which win over the caller's own)."""
        env = {k: v for k, v in os.environ.items()
               if k not in _DROPPED_ENV and not k.startswith(_DROPPED_ENV_PREFIXES)}
        env.update({
            "TF_CLI_CONFIG_FILE": str(self.cli_config.resolve()),
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
        })
        env.update(self.env_extra)
        if workdir is not None:
            env.update(terraform_variables_env(workdir))
        return env

    def _describe(self, command: str) -> str:
        where = []
        if self.block:
            where.append(f"block {self.block!r}")
        if self.environment:
            where.append(f"environment {self.environment!r}")
        return f"terraform {command}" + (f" for {' in '.join(where)}" if where else "")

    def _run(self, workdir: Path, args: list[str], ok_codes: Iterable[int] = (0,),
             capture: bool = False) -> RunResult:
        command = " ".join(args[:2]) if args[:1] == ["state"] else args[0]
        if self.cancel.is_set():
            raise TerraformCancelled(f"{self._describe(command)} not started: cancelled",
                                     command=command)
        leases = self._attach_shared(command, workdir)
        private_dir(self.log_dir, base=self.log_dir.parent)
        log_path, log = self._open_log(command)
        redact = Redactor(sensitive_strings(workdir))
        started = time.monotonic()
        stderr_lines: list[str] = []
        stdout_chunks: list[str] = []
        with log:
            log.write(f"# {self.executable} {' '.join(_masked(args))}\n# cwd: {workdir}\n"
                      f"# started: {datetime.now(UTC).isoformat()}\n")
            for lease in leases:
                log.write(f"# provider {lease.provider.source}: shared process, pid "
                          f"{lease.process.pid}\n")
            log.flush()
            try:
                process = subprocess.Popen(
                    [str(self.executable), *args], cwd=workdir,
                    env={**self.environment_for(workdir), **reattach_environment(leases)},
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    # Own session: a Ctrl-C on the terminal reaches the tool, which forwards
                    # one graceful SIGINT (a second one would make Terraform abort hard).
                    start_new_session=True,
                )
            except OSError as exc:
                log.write(f"# could not start: {exc}\n")
                raise TerraformError(
                    f"{self._describe(command)}: cannot run {self.executable}: "
                    f"{exc.strerror or exc}", command=command, log_path=log_path,
                    hint="check INFRABLOCKS_TERRAFORM / [terraform] binary") from None
            write_lock = threading.Lock()
            readers = [
                threading.Thread(target=self._pump, daemon=True, args=(
                    process.stdout, log, write_lock, stdout_chunks if capture else None, None,
                    redact)),
                threading.Thread(target=self._pump, daemon=True, args=(
                    process.stderr, log, write_lock, None, stderr_lines, redact)),
            ]
            running = _Process(process)
            with self._lock:
                self._running.add(running)
            try:
                for reader in readers:
                    reader.start()
                rc = self._wait(running, started)
            finally:
                with self._lock:
                    self._running.discard(running)
                # A grandchild that kept Terraform's stdout open must not hang the driver.
                for reader in readers:
                    reader.join(timeout=_READER_GRACE)
            duration = time.monotonic() - started
            why_stopped = running.stopped_because
            provider_notes = [note for note in (lease.ended() for lease in leases) if note]
            for note in provider_notes:
                log.write(f"# {note}\n")
            if why_stopped and running.terminate_leftovers():
                log.write("# terminated processes the stopped Terraform left behind\n")
            log.write(f"# exit code {rc} after {duration:.2f}s"
                      + (f" ({why_stopped})" if why_stopped else "") + "\n")
        result = RunResult(command, rc, log_path, duration, "".join(stdout_chunks),
                           "".join(stderr_lines))
        # A command that completed despite a late stop request is a success.
        if rc not in tuple(ok_codes):
            self._fail(result, why_stopped, stderr_lines, provider_notes)
        return result

    def _attach_shared(self, command: str, workdir: Path) -> list[Lease]:
        """The shared providers this command in ``workdir`` reaches (started if needed)."""
        if command not in PROVIDER_COMMANDS:
            return []
        leases = []
        for shared in self.shared_providers:
            if shared.uses(workdir):
                try:
                    lease = shared.attach()
                except SharedProviderError as exc:
                    raise TerraformError(f"{self._describe(command)} not started: {exc.message}",
                                         command=command, hint=exc.hint) from None
                if lease is not None:
                    leases.append(lease)
        return leases

    def _wait(self, running: _Process, started: float) -> int:
        """Wait for the process; forward cancel/timeout/Ctrl-C as one graceful SIGINT."""
        try:
            while True:
                rc = running.wait(_POLL)
                if rc is not None:
                    return rc
                if self.cancel.is_set():
                    running.interrupt("cancelled")
                elif self.timeout is not None and time.monotonic() - started > self.timeout:
                    running.interrupt(f"timed out after {self.timeout:g}s")
        except BaseException:
            # KeyboardInterrupt or the like in the caller: let Terraform save its state first.
            # A second Ctrl-C during this wait leaves Terraform finishing on its own (it runs
            # in its own session) rather than aborting it.
            running.interrupt("interrupted")
            running.process.wait()
            running.terminate_leftovers()
            raise

    def _pump(self, stream: IO[bytes], log: IO[str], write_lock: threading.Lock,
              capture: list[str] | None, lines: list[str] | None,
              redact: Redactor | None = None) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace")
            if capture is not None:
                capture.append(text)   # JSON for the tool itself: real values, never logged
                continue
            if redact is not None:
                text = redact(text)
            if lines is not None:
                lines.append(text)
            with write_lock, contextlib.suppress(ValueError):  # log closed: caller gave up
                log.write(text)
                log.flush()
            if self.on_output is not None:
                try:
                    self.on_output(text.rstrip("\n"))
                except Exception as exc:  # a broken progress display must not stop Terraform
                    with write_lock:
                        log.write(f"# progress callback failed: {exc!r}\n")
                    self.on_output = None
        stream.close()
        if capture is not None:
            with write_lock, contextlib.suppress(ValueError):
                size = sum(len(c) for c in capture)
                log.write(f"# stdout: {size} characters of JSON captured, not logged\n")

    def _open_log(self, command: str) -> tuple[Path, IO[str]]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        label = "-".join(p for p in (self.environment, self.block) if p)
        base = f"{stamp}-{label + '-' if label else ''}{command.replace(' ', '-')}"
        for attempt in range(100):
            path = self.log_dir / (f"{base}.log" if attempt == 0 else f"{base}.{attempt}.log")
            try:
                return path, open_private(path, "x")
            except FileExistsError:
                continue
        raise TerraformError(f"cannot create a log file in {self.log_dir}")

    def _fail(self, result: RunResult, why_stopped: str | None,
              stderr_lines: list[str], notes: Sequence[str] = ()) -> None:
        errors = summarize_errors(stderr_lines)
        what = self._describe(result.command)
        if why_stopped == "cancelled":
            head = f"{what} was cancelled (Terraform stopped gracefully and saved its state)"
            error_cls: type[TerraformError] = TerraformCancelled
        elif why_stopped:
            head = f"{what} {why_stopped} and was stopped"
            error_cls = TerraformError
        else:
            head = f"{what} failed (exit code {result.exit_code})"
            error_cls = TerraformError
        body = "\n".join(f"  {line}" if line else ""
                         for line in [*errors.splitlines(), *notes])
        message = f"{head}\n{body}\n  log: {result.log_path}" if body else \
            f"{head}\n  log: {result.log_path}"
        raise error_cls(message, command=result.command, exit_code=result.exit_code,
                        log_path=result.log_path, errors=errors)


class _Process:
    """A running Terraform process, interrupted at most once.

    A second SIGINT makes Terraform abort at once without saving its state, so every stop
    request after the first one is ignored.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.stopped_because: str | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> int | None:
        """The exit code as soon as the process has ended, or None after ``timeout`` s.

        ``Popen.wait(timeout)`` polls with sleeps growing to 50 ms, so a command was seen to
        end ~20 ms (median) after it did, twice per block; a pidfd (Linux ≥ 5.3) wakes at once.
        """
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):  # not Linux, or already reaped by poll()
            pidfd = None
        if pidfd is not None:
            import select

            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(timeout * 1000):
                    return None
            finally:
                os.close(pidfd)
        try:
            return self.process.wait(timeout=0 if pidfd is not None else timeout)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self, reason: str) -> None:
        with self._lock:
            if self.stopped_because is not None or self.process.poll() is not None:
                return
            self.stopped_because = reason
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)

    def terminate_leftovers(self) -> bool:
        """SIGTERM what is left of the process's group (e.g. a provisioner's ``sleep``).

        A stopped Terraform kills its provisioner shells but not their children. Terraform
        runs in its own session, so its pid names the group; processes that detached into a
        session of their own (local-cloud instances) are not touched.
        """
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class Redactor:
    """Replaces known secret strings with ``(sensitive value)`` in what is logged or shown.

    Terraform masks what it knows is sensitive, but not a provider-computed attribute derived
    from a sensitive input (``terraform_data``'s ``output`` is printed in clear in a destroy
    plan although its ``input`` is masked). The driver knows the sensitive inputs it passes, so
    it takes them out of every line it logs, forwards to ``on_output`` or puts in an error.
    Strings shorter than ``MIN_LENGTH`` are left alone (masking "1" would mask every digit).
    """

    MIN_LENGTH = 6
    MASK = "(sensitive value)"

    def __init__(self, secrets: Iterable[str]) -> None:
        from infrablocks.terraform.hcl import hcl_string

        # As given, as Terraform quotes it (HCL escapes) or as JSON does; a multi-line value
        # is printed as a heredoc, one line at a time.
        pieces = {piece for secret in secrets for piece in (secret, *secret.split("\n"))}
        variants = {form for piece in pieces if len(piece) >= self.MIN_LENGTH
                    for form in (piece, json.dumps(piece)[1:-1], hcl_string(piece)[1:-1])}
        self._pattern = (re.compile("|".join(re.escape(v) for v in
                                             sorted(variants, key=len, reverse=True)))
                         if variants else None)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self.MASK, text) if self._pattern is not None else text


def sensitive_strings(workdir: Path) -> list[str]:
    """Every string leaf of the working directory's sensitive inputs."""
    from infrablocks.terraform.workdir import sensitive_inputs

    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append(str(value))

    walk(sensitive_inputs(workdir))
    return found


_SECRET_KEY = re.compile(r"secret|token|password|access_key", re.IGNORECASE)


def _masked(args: list[str]) -> list[str]:
    """The arguments for the log, with secret ``-backend-config=KEY=VALUE`` values hidden."""
    masked = []
    for arg in args:
        key, sep, _ = arg.removeprefix("-backend-config=").partition("=")
        if arg.startswith("-backend-config=") and sep and _SECRET_KEY.search(key):
            arg = f"-backend-config={key}=***"
        masked.append(arg)
    return masked


def _selection_args(var_files: Sequence[Path | str], targets: Sequence[str],
                    replace: Sequence[str]) -> list[str]:
    return ([f"-var-file={f}" for f in var_files] + [f"-target={t}" for t in targets]
            + [f"-replace={r}" for r in replace])


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_json(result: RunResult, what: str) -> Any:
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise TerraformError(f"{what} printed no valid JSON ({exc})", command=result.command,
                             log_path=result.log_path) from None


__all__ = ["Plan", "RunResult", "Terraform", "TerraformCancelled", "TerraformError"]

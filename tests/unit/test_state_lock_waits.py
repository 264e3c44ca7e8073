"""Waiting for a deployment's lock (``state.locks.acquire_waiting``): who holds it is said once,
a live holder is waited for up to the timeout, a dead holder is taken over only once the
processes it started under the lock (its Terraform) have exited."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.state import LockHeldError
from infrablocks.state.local import LocalBackend
from infrablocks.state.locks import (
    WORKER_ENV,
    LockBusyError,
    acquire_waiting,
    held_lock,
    lock_workers,
    worker_environment,
)

HOLDER = """
import os, subprocess, sys
from pathlib import Path
from infrablocks.state.local import LocalBackend
from infrablocks.state.locks import worker_environment
lock = LocalBackend(Path(sys.argv[1])).acquire_lock("prod", "base", "create")
env = dict(os.environ, **worker_environment("prod", "base"))
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                          env=env, stdin=subprocess.DEVNULL, start_new_session=True)
print(worker.pid, flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "state")


@pytest.fixture
def holder(backend: LocalBackend) -> Iterator[subprocess.Popen[str]]:
    """A process holding prod/base's lock, with a worker (a sleeping child in its own
    session, as Terraform is) carrying the lock's token."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(backend.root)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.worker_pid = int(proc.stdout.readline())  # type: ignore[attr-defined]
    yield proc
    for pid in (proc.pid, proc.worker_pid):  # type: ignore[attr-defined]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_a_live_holder_is_waited_for_and_named_once(backend, holder) -> None:
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(LockHeldError) as caught:
        acquire_waiting(backend, "prod", "base", "create", timeout=0.6, say=said.append)
    assert time.monotonic() - started >= 0.6
    info = caught.value.holder
    assert said == [f"waiting up to 1s for the lock of base: held by {info.holder} (pid "
                    f"{holder.pid}, running `create`) since {info.since}"]
    with pytest.raises(LockHeldError):       # 0: refused at once, nothing said
        acquire_waiting(backend, "prod", "base", "create", timeout=0, say=said.append)
    assert len(said) == 1


def test_a_dead_holder_is_taken_over_only_after_its_workers_exited(backend, holder) -> None:
    info = backend.lock_holder("prod", "base")
    assert lock_workers(info.token) == [holder.worker_pid]
    holder.kill()
    holder.wait(timeout=10)

    said: list[str] = []
    with pytest.raises(LockBusyError) as caught:
        acquire_waiting(backend, "prod", "base", "create", timeout=0.5, say=said.append)
    message = str(caught.value)
    assert f"the `create` of {info.holder} (pid {holder.pid}, since {info.since}) died" in message
    assert f"still runs (pid {holder.worker_pid})" in message and "nothing was changed" in message
    assert "for the Terraform it left running" in said[-1]
    # handed back: the next acquirer still sees the dead holder and its worker
    with pytest.raises(LockBusyError):
        acquire_waiting(backend, "prod", "base", "create", timeout=0.2)

    os.kill(holder.worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lock_workers(info.token):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with acquire_waiting(backend, "prod", "base", "create", timeout=5) as lock:
        assert lock.previous == info
        assert lock.note and f"pid {holder.pid}" in lock.note
        assert held_lock("prod", "base") is lock.info
        assert worker_environment("prod", "base") == {WORKER_ENV: lock.info.token}
    assert held_lock("prod", "base") is None and worker_environment("prod", "base") == {}


def test_lock_workers_ignores_other_tokens_and_dead_processes() -> None:
    env = dict(os.environ, **{WORKER_ENV: "abc123"})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        assert lock_workers("abc123") == [child.pid]
        assert lock_workers("abc12") == [] and lock_workers("") == []
    finally:
        child.kill()
        child.wait()
    assert lock_workers("abc123") == []

"""terraform/reattach.py: the run's one provider process, as the tool starts, leases, restarts
and stops it (the real local-cloud provider in ``--serve`` mode; Terraform talking to it:
tests/integration/test_shared_provider.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from infrablocks.cloud.local.mirror import PROVIDER_SOURCE, serve_argv
from infrablocks.terraform.reattach import (
    REATTACH_ENV,
    SharedProvider,
    SharedProviderError,
    reattach_environment,
    stop_all,
)

WAIT = 30.0


def _provider(tmp_path: Path, argv: list[str] | None = None, **kwargs: object
              ) -> SharedProvider:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "LOCALCLOUD_"))}
    env["LOCALCLOUD_ROOT"] = str(tmp_path / "cloud")
    return SharedProvider(PROVIDER_SOURCE, argv or serve_argv(), env, tmp_path / "logs",
                          **kwargs)  # type: ignore[arg-type]


def _gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie nobody reaps here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_one_process_serves_every_lease_until_stopped(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    try:
        first = provider.attach()
        second = provider.attach()
        assert first is not None and second is not None
        assert first.process is second.process and provider.starts == 1
        entry = first.config[PROVIDER_SOURCE]
        # go-plugin's ReattachConfig: gRPC, protocol 6, "Test" so that Terraform never kills it
        assert (entry["Protocol"], entry["ProtocolVersion"], entry["Test"], entry["Pid"]) == (
            "grpc", 6, True, first.process.pid)
        address = entry["Addr"]["String"]
        assert entry["Addr"]["Network"] == "unix"
        assert (Path(address).parent.stat().st_mode & 0o777) == 0o700   # only the user
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(address)
        env = reattach_environment([first])
        assert json.loads(env[REATTACH_ENV]) == first.config
        assert reattach_environment([]) == {}
        assert first.ended() is None
        assert provider.log_path is not None and provider.log_path.stat().st_mode & 0o077 == 0
    finally:
        provider.stop()
    assert first.process.returncode == 0          # SIGTERM: a graceful stop
    assert not Path(address).parent.exists()      # its socket directory is removed
    assert provider.attach() is None              # after stop: Terraform starts its own
    assert provider.pid is None


def test_a_killed_provider_is_reported_by_the_lease_and_restarted_by_the_next_attach(
        tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    try:
        lease = provider.attach()
        assert lease is not None
        socket = Path(next(iter(lease.config.values()))["Addr"]["String"])
        assert socket.exists()
        os.kill(lease.process.pid, signal.SIGKILL)
        lease.process.wait(timeout=WAIT)
        note = lease.ended()
        assert note is not None
        assert f"pid {lease.process.pid}" in note and "killed by SIGKILL" in note
        assert "the next command starts a new provider process" in note
        again = provider.attach()
        assert again is not None and again.process.pid != lease.process.pid
        assert provider.starts == 2 and again.ended() is None
        assert not socket.parent.exists(), "the killed server's socket directory is removed"
    finally:
        provider.stop()


def test_prestart_does_not_wait_and_attach_then_uses_that_process(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    try:
        provider.prestart()
        pid = provider.pid
        assert pid is not None
        lease = provider.attach()
        assert lease is not None and lease.process.pid == pid and provider.starts == 1
    finally:
        provider.stop()


def test_stop_all_stops_every_started_provider(tmp_path: Path) -> None:
    providers = [_provider(tmp_path / str(n)) for n in range(2)]
    leases = [p.attach() for p in providers]
    stop_all()
    assert all(lease is not None and lease.process.returncode is not None for lease in leases)


def test_a_provider_whose_starter_is_gone_stops_once_idle(tmp_path: Path) -> None:
    # The tool died without stopping it: end of file on the provider's stdin. With no call
    # coming, it stops after its linger time (here 0.2 s instead of 30 s).
    provider = _provider(tmp_path, [*serve_argv(), "--linger", "0.2"])
    lease = provider.attach()
    assert lease is not None
    assert lease.process.stdin is not None
    lease.process.stdin.close()
    lease.process.wait(timeout=WAIT)
    assert lease.process.returncode == 0
    provider.stop()


def test_a_provider_that_fails_to_start_is_a_clear_error(tmp_path: Path) -> None:
    exits = _provider(tmp_path, [sys.executable, "-c",
                                 "import sys; sys.exit('grpc is not installed')"])
    with pytest.raises(SharedProviderError) as failed:
        exits.attach()
    assert "exited before serving (exit code 1)" in str(failed.value)
    assert "grpc is not installed" in str(failed.value)
    assert "its log:" in str(failed.value)

    garbage = _provider(tmp_path, [sys.executable, "-c", "print('hello'); input()"])
    with pytest.raises(SharedProviderError, match="printed no valid reattach line"):
        garbage.attach()
    assert garbage.pid is None      # killed, not left behind

    silent = _provider(tmp_path, [sys.executable, "-c", "input()"], start_timeout=0.3)
    with pytest.raises(SharedProviderError, match="did not start serving within 0.3s"):
        silent.attach()
    assert silent.pid is None

    missing = _provider(tmp_path, [str(tmp_path / "no-such-python")])
    with pytest.raises(SharedProviderError, match="cannot start"):
        missing.attach()


def test_only_working_directories_whose_lock_file_names_the_provider_use_it(
        tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert not provider.uses(workdir) and not provider.may_use(workdir)
    (workdir / "main.tf").write_text(
        'terraform {\n  required_providers {\n    localcloud = { source = '
        f'"{PROVIDER_SOURCE}" }}\n  }}\n}}\n')
    assert provider.may_use(workdir) and not provider.uses(workdir)   # before init
    lock = workdir / ".terraform.lock.hcl"
    lock.write_text('provider "registry.terraform.io/hashicorp/aws" {\n}\n')
    assert not provider.uses(workdir)
    lock.write_text(f'provider "{PROVIDER_SOURCE}" {{\n  version = "0.1.0"\n}}\n')
    os.utime(lock, (time.time() + 5, time.time() + 5))   # a new mtime: read again
    assert provider.uses(workdir)
    assert provider.pid is None                           # asking starts nothing


def test_a_dropped_provider_object_stops_its_process(tmp_path: Path) -> None:
    import gc

    provider = _provider(tmp_path)
    lease = provider.attach()
    assert lease is not None
    process = lease.process
    del provider, lease
    gc.collect()
    assert process.wait(timeout=WAIT) == 0     # SIGTERM from the finalizer: a graceful stop


def test_a_ctrl_c_during_the_handshake_leaves_no_half_started_process(tmp_path: Path) -> None:
    # Ctrl-C (KeyboardInterrupt in the tool) while the provider has not printed its reattach
    # line yet: that process is killed, not kept half read for the next attach, which starts a
    # new one and completes its handshake.
    provider = _provider(tmp_path, [sys.executable, "-c", "input()"])

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            provider.attach()
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert provider.starts == 1 and provider.pid is None
        assert provider.log_path is not None
        first_log = provider.log_path
        provider.argv = serve_argv()          # this time it serves
        lease = provider.attach()
        assert lease is not None and lease.ended() is None and provider.starts == 2
        assert lease.log_path != first_log
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        provider.stop()

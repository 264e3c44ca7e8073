"""The local state backend: private files, state reading, records, documents, listing, locks."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infrablocks.errors import ConfigError, InfrablocksError, UsageError
from infrablocks.state import (
    LockHeldError,
    backend_from_settings,
    current_identity,
    new_record,
)
from infrablocks.state.local import LocalBackend
from infrablocks.state.outputs import Outputs

WAIT = 10.0


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "state")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_state(backend: LocalBackend, env: str, block: str, outputs: dict) -> None:
    """Stand in for Terraform's own write of the state file (what `apply` leaves)."""
    spec = backend.terraform_backend(env, block)
    Path(str(spec.config["path"])).write_text(json.dumps(
        {"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": "x",
         "outputs": outputs, "resources": []}))


def test_terraform_backend_is_an_absolute_local_path_in_private_directories(backend) -> None:
    spec = backend.terraform_backend("prod", "base")

    state = Path(str(spec.config["path"]))
    assert spec.kind == "local" and state.is_absolute()
    assert state == (backend.root / "prod" / "base" / "terraform.tfstate").resolve()
    for directory in (backend.root, backend.root / "prod", state.parent):
        assert mode(directory) == 0o700, directory
    # Created beforehand so that Terraform keeps them owner-only when it writes them.
    assert mode(state) == 0o600 and state.stat().st_size == 0
    assert mode(state.with_name("terraform.tfstate.backup")) == 0o600
    assert backend.read_state("prod", "base") is None  # empty file: no state yet
    assert backend.describe("prod", "base") == str(backend.root / "prod/base/terraform.tfstate")


def test_existing_loose_directories_are_tightened(tmp_path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    LocalBackend(root).terraform_backend("prod", "base")
    assert mode(root) == 0o700


def test_outputs_are_read_from_the_state_file(backend) -> None:
    write_state(backend, "prod", "base", {
        "endpoints": {"value": ["a:1"], "type": ["list", "string"]},
        "token": {"value": "t0ps3cret", "type": "string", "sensitive": True}})

    outputs = backend.read_outputs("prod", "base")

    assert outputs["endpoints"] == ["a:1"] and outputs.sensitive == {"token"}
    assert "t0ps3cret" not in repr(outputs)
    assert backend.read_outputs("prod", "nomad") == Outputs()


def test_a_damaged_state_file_is_named(backend) -> None:
    spec = backend.terraform_backend("prod", "base")
    Path(str(spec.config["path"])).write_text("{oops")
    with pytest.raises(InfrablocksError, match="not valid JSON") as caught:
        backend.read_state("prod", "base")
    assert "prod/base/terraform.tfstate" in str(caught.value)


def test_records_round_trip_list_and_delete_with_private_files(backend) -> None:
    for block, version in (("nomad", "1.0.0"), ("base", "1.1.0")):
        backend.put_record(new_record("prod", block, version, outputs=Outputs({"a": 1}),
                                      terraform_version="1.15.5"))
    backend.put_record(new_record("staging", "base", "1.0.0", outputs=None,
                                  terraform_version="1.15.5"))

    record = backend.get_record("prod", "base")
    assert record is not None and record.version == "1.1.0"
    assert record.applied_by == current_identity()
    assert [r.block for r in backend.list_records("prod")] == ["base", "nomad"]
    assert backend.list_environments() == ["prod", "staging"]
    assert mode(backend.root / "prod" / "base" / "deployment.json") == 0o600
    assert backend.get_record("prod", "stolon") is None

    assert backend.delete_record("prod", "nomad") is True
    assert backend.delete_record("prod", "nomad") is False
    assert [r.block for r in backend.list_records("prod")] == ["base"]


def test_documents_round_trip_beside_the_state(backend) -> None:
    journal = {"target": "1.1.0", "done": ["i-1"], "step": 3}
    backend.put_document("prod", "base", "rolling-journal", journal)

    assert backend.get_document("prod", "base", "rolling-journal") == journal
    path = backend.root / "prod" / "base" / "documents" / "rolling-journal.json"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert backend.list_blocks("prod") == ["base"]
    assert backend.delete_document("prod", "base", "rolling-journal") is True
    assert backend.get_document("prod", "base", "rolling-journal") is None
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        backend.put_document("prod", "base", "bad", {"x": object()})


def test_purge_forgets_a_destroyed_deployment(backend) -> None:
    write_state(backend, "t-abc123", "base", {})
    backend.put_record(new_record("t-abc123", "base", "1.0.0", outputs=None,
                                  terraform_version="1.15.5"))
    backend.put_document("t-abc123", "base", "journal", {})
    assert backend.list_environments() == ["t-abc123"]

    backend.purge("t-abc123", "base")

    assert backend.list_environments() == []
    assert not (backend.root / "t-abc123").exists()


@pytest.mark.parametrize("env, block", [("../etc", "base"), ("prod", "a/b"), ("", "x"),
                                        ("prod", ".hidden")])
def test_names_that_would_escape_the_layout_are_refused(backend, env, block) -> None:
    with pytest.raises(UsageError, match="invalid"):
        backend.terraform_backend(env, block)


def test_settings_select_and_validate_the_backend(tmp_path) -> None:
    default = backend_from_settings({}, tmp_path)
    assert isinstance(default, LocalBackend)
    assert default.root == tmp_path / ".infrablocks" / "state"
    custom = backend_from_settings({"backend": "local", "path": "/var/tmp/st"}, tmp_path)
    assert custom.root == Path("/var/tmp/st")

    with pytest.raises(ConfigError, match="unknown key for the local backend: bucket"):
        backend_from_settings({"bucket": "x"}, tmp_path)
    with pytest.raises(ConfigError, match="'gcs' is not a known state backend"):
        backend_from_settings({"backend": "gcs"}, tmp_path)
    with pytest.raises(ConfigError, match="needs a bucket"):
        backend_from_settings({"backend": "s3"}, tmp_path)
    with pytest.raises(ConfigError, match="use_path_style must be true or false"):
        backend_from_settings({"backend": "s3", "bucket": "b-1", "use_path_style": "yes"},
                              tmp_path)
    with pytest.raises(ConfigError, match="both access_key and secret_key"):
        backend_from_settings({"backend": "s3", "bucket": "b-1", "access_key": "a"}, tmp_path)


def test_s3_settings_give_terraform_the_moto_friendly_backend(tmp_path) -> None:
    backend = backend_from_settings({"backend": "s3", "bucket": "tf-state", "prefix": "/ib/",
                                     "endpoint": "http://127.0.0.1:5000",
                                     "access_key": "k", "secret_key": "s"}, tmp_path)
    spec = backend.terraform_backend("prod", "base")
    assert spec.kind == "s3"
    assert spec.config["key"] == "ib/prod/base/terraform.tfstate"
    assert spec.config["use_lockfile"] is True
    assert spec.config["endpoints"] == {"s3": "http://127.0.0.1:5000"}
    assert spec.config["use_path_style"] is True and spec.config["skip_region_validation"]
    aws = backend_from_settings({"backend": "s3", "bucket": "tf-state"}, tmp_path)
    config = aws.terraform_backend("prod", "base").config
    assert "endpoints" not in config and "skip_credentials_validation" not in config


# -- locks ------------------------------------------------------------------------------------

HOLDER = """
import sys
from pathlib import Path
from infrablocks.state.local import LocalBackend
lock = LocalBackend(Path(sys.argv[1])).acquire_lock(sys.argv[2], sys.argv[3], sys.argv[4])
print("locked", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def lock_holder(backend) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start another process that takes a lock and holds it until told (a line on stdin)."""
    started: list[subprocess.Popen[str]] = []

    def start(env: str = "prod", block: str = "base",
              operation: str = "create") -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(backend.root), env, block,
                                 operation], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_a_second_process_is_refused_with_who_holds_the_lock(backend, lock_holder) -> None:
    holder = lock_holder(operation="create")

    with pytest.raises(LockHeldError) as caught:
        backend.acquire_lock("prod", "base", "destroy")

    info = caught.value.holder
    assert info is not None
    assert info.pid == holder.pid and info.operation == "create"
    assert info.holder == current_identity()
    message = str(caught.value)
    assert f"pid {holder.pid}" in message and "`create`" in message and info.since in message
    assert "block 'base' in environment 'prod'" in message
    assert backend.lock_holder("prod", "base") == info
    # Other blocks and environments are independent.
    with backend.acquire_lock("prod", "nomad", "create"), \
            backend.acquire_lock("staging", "base", "create"):
        pass


def test_the_lock_is_free_again_after_release(backend, lock_holder) -> None:
    holder = lock_holder()
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"

    with backend.acquire_lock("prod", "base", "upgrade") as lock:
        assert lock.note is None and lock.held
        assert backend.lock_holder("prod", "base").operation == "upgrade"
    assert not lock.held and backend.lock_holder("prod", "base") is None


def test_waiting_acquirer_gets_the_lock_once_it_is_released(backend, lock_holder) -> None:
    holder = lock_holder()
    got: list[object] = []

    def wait_for_it() -> None:
        with backend.acquire_lock("prod", "base", "create", wait=WAIT) as lock:
            got.append(lock.info.pid)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    waiter.join(WAIT + 5)
    assert got == [os.getpid()]


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_note(backend, lock_holder
                                                                   ) -> None:
    holder = lock_holder(operation="create")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=WAIT)

    with backend.acquire_lock("prod", "base", "destroy") as lock:
        assert lock.note is not None
        assert f"pid {holder.pid}" in lock.note and "`create`" in lock.note
    with backend.acquire_lock("prod", "base", "destroy") as lock:
        assert lock.note is None  # released properly this time


def test_the_same_lock_twice_in_one_process_is_refused_too(backend) -> None:
    with backend.acquire_lock("prod", "base", "create"), \
            pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        backend.acquire_lock("prod", "base", "create")

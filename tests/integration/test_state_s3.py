"""The S3 state backend against a real moto server on 127.0.0.1, with real Terraform.

Terraform (``.venv/bin/terraform``) applies a ``terraform_data`` module whose state lives in the
bucket through the backend's ``BackendSpec``; the backend then reads the outputs straight from
the state object. Terraform's own ``use_lockfile`` lock and the infrablocks lock (conditional
PUT) are both exercised with two concurrent parties.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.state import LockHeldError, backend_from_settings, current_identity, new_record
from infrablocks.state.s3 import S3Backend
from infrablocks.terraform.binary import find_terraform
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from infrablocks.terraform.driver import Terraform, TerraformError
from infrablocks.terraform.workdir import prepare_workdir
from tests.support.loopback import free_port
from tests.support.sleepers import Sleepers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 30.0
SLOW = "6"  # seconds the slow provisioner sleeps

SLEEPERS = Sleepers("state-s3")
MODULE = """
variable "environment" { type = string }
variable "slow_seconds" {
  type    = string
  default = ""
}
resource "terraform_data" "member" {
  count = 2
  input = "${var.environment}-member-${count.index}"
}
resource "terraform_data" "slow" {
  count = var.slow_seconds != "" ? 1 : 0
  input = "slow"
  provisioner "local-exec" {
    command = "@SLEEP@"
  }
}
output "member_ids" { value = terraform_data.member[*].output }
output "password" {
  value     = "s3cr3t-${var.environment}"
  sensitive = true
}
"""
MODULE = MODULE.replace("@SLEEP@", SLEEPERS.command("${var.slow_seconds}"))


@pytest.fixture
def s3_backend(moto_endpoint: str, request: pytest.FixtureRequest) -> Iterator[S3Backend]:
    """A fresh bucket per test, emptied and deleted afterwards."""
    bucket = f"tfstate-{abs(hash(request.node.name)) % 10**8}-{os.getpid()}"
    backend = backend_from_settings({
        "backend": "s3", "bucket": bucket, "prefix": "infrablocks", "region": "us-east-1",
        "endpoint": moto_endpoint, "access_key": "testing", "secret_key": "testing",
    }, Path("/nonexistent"))
    assert isinstance(backend, S3Backend)
    client = backend.client()
    client.create_bucket(Bucket=bucket)
    yield backend
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


class Area:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = root / "blocks" / "demo" / "1.0.0"
        self.source.mkdir(parents=True)
        (self.source / "main.tf").write_text(MODULE)
        self.cli_config = write_cli_config(CliConfigPaths.under(root / "terraform"),
                                           populate_mirror=False)
        self.binary = find_terraform(environ={})

    def driver(self, environment: str, block: str) -> Terraform:
        return Terraform(self.binary, self.cli_config, self.root / "logs", block=block,
                         environment=environment)


@pytest.fixture
def area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Area]:
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "missing-user.tfrc"))
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield Area(tmp_path / "area")
    SLEEPERS.kill_all()
    shutil.rmtree(tmp_path, ignore_errors=True)




def test_terraform_applies_with_the_spec_and_outputs_are_read_from_s3(s3_backend, area
                                                                      ) -> None:
    assert s3_backend.read_state("dev", "demo") is None
    spec = s3_backend.terraform_backend("dev", "demo")
    workdir = prepare_workdir(area.root / "work", "dev", "demo", area.source, spec,
                              {"environment": "dev"})
    terraform = area.driver("dev", "demo")
    terraform.init(workdir)
    terraform.apply(workdir)

    state = s3_backend.read_state("dev", "demo")
    assert state is not None and state["terraform_version"]
    outputs = s3_backend.read_outputs("dev", "demo")
    assert outputs["member_ids"] == ["dev-member-0", "dev-member-1"]
    assert outputs["password"] == "s3cr3t-dev" and outputs.sensitive == {"password"}
    assert "s3cr3t" not in repr(outputs)
    # Same answer as Terraform's own `output -json`, without running Terraform.
    from infrablocks.state.outputs import Outputs
    assert Outputs.from_terraform(terraform.output(workdir)) == outputs
    # Nothing of the state was written locally.
    assert not list(workdir.glob("terraform.tfstate*"))

    record = new_record("dev", "demo", "1.0.0", outputs=outputs,
                        terraform_version=state["terraform_version"])
    s3_backend.put_record(record)
    assert s3_backend.get_record("dev", "demo") == record
    assert s3_backend.list_environments() == ["dev"]
    assert s3_backend.list_blocks("dev") == ["demo"]

    terraform.destroy(workdir)
    assert s3_backend.read_outputs("dev", "demo") == Outputs()
    s3_backend.purge("dev", "demo")
    assert s3_backend.list_environments() == []


def test_two_concurrent_applies_on_one_state_the_second_gets_terraforms_lock_error(
        s3_backend, area) -> None:
    spec = s3_backend.terraform_backend("dev", "demo")
    first_dir = prepare_workdir(area.root / "work-a", "dev", "demo", area.source, spec,
                                {"environment": "dev", "slow_seconds": SLOW})
    second_dir = prepare_workdir(area.root / "work-b", "dev", "demo", area.source, spec,
                                 {"environment": "dev"})
    first, second = area.driver("dev", "demo"), area.driver("dev", "demo")
    first.init(first_dir)
    second.init(second_dir)
    client = s3_backend.client()
    tflock = s3_backend.key("dev", "demo") + ".tflock"

    outcome: list[BaseException | None] = []

    def apply_first() -> None:
        try:
            first.apply(first_dir)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=apply_first)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while not _exists(client, s3_backend.settings.bucket, tflock):
            assert time.monotonic() < deadline, "the first apply never took the lock file"
            assert thread.is_alive(), f"the first apply ended early: {outcome}"
            time.sleep(0.05)
        with pytest.raises(TerraformError) as caught:
            second.apply(second_dir)
        text = f"{caught.value}\n{caught.value.errors}"
        assert "Error acquiring the state lock" in text
    finally:
        thread.join(WAIT + float(SLOW))
        first.stop()
    assert outcome == [None]
    assert not _exists(client, s3_backend.settings.bucket, tflock)
    assert s3_backend.read_outputs("dev", "demo")["member_ids"] == ["dev-member-0",
                                                                   "dev-member-1"]


def _exists(client, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def test_records_and_documents_live_beside_the_state_object(s3_backend) -> None:
    s3_backend.put_record(new_record("prod", "base", "1.0.0", outputs=None,
                                     terraform_version="1.15.5"))
    s3_backend.put_record(new_record("prod", "nomad", "1.0.0", outputs=None,
                                     terraform_version="1.15.5"))
    s3_backend.put_document("staging", "base", "rolling-journal", {"step": 2})

    assert [r.block for r in s3_backend.list_records("prod")] == ["base", "nomad"]
    assert s3_backend.list_environments() == ["prod", "staging"]
    assert s3_backend.get_document("staging", "base", "rolling-journal") == {"step": 2}
    keys = {item["Key"] for item in s3_backend.client().list_objects_v2(
        Bucket=s3_backend.settings.bucket)["Contents"]}
    assert keys == {"infrablocks/prod/base/deployment.json",
                    "infrablocks/prod/nomad/deployment.json",
                    "infrablocks/staging/base/documents/rolling-journal.json"}
    assert s3_backend.delete_document("staging", "base", "rolling-journal") is True
    assert s3_backend.delete_document("staging", "base", "rolling-journal") is False
    assert s3_backend.delete_record("prod", "nomad") is True
    assert s3_backend.list_environments() == ["prod"]


HOLDER = """
import sys
from infrablocks.state import backend_from_settings
backend = backend_from_settings({"backend": "s3", "bucket": sys.argv[1],
                                 "endpoint": sys.argv[2], "access_key": "testing",
                                 "secret_key": "testing"}, None)
lock = backend.acquire_lock("prod", "base", "upgrade")
print("locked", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def s3_lock_holder(s3_backend, moto_endpoint) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, s3_backend.settings.bucket,
                             moto_endpoint], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_the_infrablocks_lock_refuses_a_second_holder_and_says_who(s3_backend, s3_lock_holder
                                                                    ) -> None:
    with pytest.raises(LockHeldError) as caught:
        s3_backend.acquire_lock("prod", "base", "create")
    holder = caught.value.holder
    assert holder is not None and holder.pid == s3_lock_holder.pid
    assert holder.operation == "upgrade" and holder.holder == current_identity()
    assert "s3://" in str(caught.value)
    assert s3_backend.lock_holder("prod", "base") == holder

    assert s3_lock_holder.stdin is not None and s3_lock_holder.stdout is not None
    s3_lock_holder.stdin.write("go\n")
    s3_lock_holder.stdin.flush()
    assert s3_lock_holder.stdout.readline().strip() == "released"
    with s3_backend.acquire_lock("prod", "base", "create") as lock:
        assert lock.note is None
    assert s3_backend.lock_holder("prod", "base") is None


def test_a_lock_object_left_by_a_dead_local_process_is_taken_over(s3_backend, s3_lock_holder
                                                                  ) -> None:
    os.kill(s3_lock_holder.pid, signal.SIGKILL)
    s3_lock_holder.wait(timeout=WAIT)
    assert s3_backend.lock_holder("prod", "base").pid == s3_lock_holder.pid  # left behind

    with s3_backend.acquire_lock("prod", "base", "create") as lock:
        assert lock.note is not None and f"pid {s3_lock_holder.pid}" in lock.note
        assert s3_backend.lock_holder("prod", "base").pid == os.getpid()
    assert s3_backend.lock_holder("prod", "base") is None


def test_release_never_removes_a_lock_someone_else_took(s3_backend) -> None:
    lock = s3_backend.acquire_lock("prod", "base", "create")
    # Someone breaks the lock (an operator) and another run takes it.
    key = s3_backend.key("prod", "base", "infrablocks.lock")
    s3_backend.client().delete_object(Bucket=s3_backend.settings.bucket, Key=key)
    other = s3_backend.acquire_lock("prod", "base", "upgrade")
    lock.release()
    assert s3_backend.lock_holder("prod", "base").operation == "upgrade"
    other.release()
    assert s3_backend.lock_holder("prod", "base") is None


def test_an_unreachable_endpoint_is_a_clear_error(tmp_path) -> None:
    backend = backend_from_settings({"backend": "s3", "bucket": "tf-state",
                                     "endpoint": f"http://127.0.0.1:{free_port()}",
                                     "access_key": "a", "secret_key": "b"}, tmp_path)
    from infrablocks.errors import InfrablocksError

    with pytest.raises(InfrablocksError, match="S3 state backend: cannot read"):
        backend.read_state("prod", "base")

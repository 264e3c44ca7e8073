"""Ctrl-C during `doit create`, and two `doit create` on the same environment at once.

- SIGINT to the doit process while blocks are being applied: Terraform gets one graceful
  SIGINT and stops; doit says what was left in which state and exits non-zero; every state is
  valid, no lock is left held, and a second `doit create` completes with no drift.
- SIGINT during `doit env`: it still destroys everything it created.
- A second create while the first holds base's lock is refused, naming the holder (user@host,
  pid, operation) and since when; the first completes.
"""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from tests.support.deploy_repo import DeployRepo, open_deploy_repo

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

WAIT = 120.0


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    with open_deploy_repo(tmp_path).closing() as deployment:
        yield deployment


class Watched:
    """A background doit whose stderr (the progress lines) is read as it comes."""

    def __init__(self, process: Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            self._queue.put(line)

    def wait_for(self, fragment: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if fragment in self._queue.get(timeout=0.5):
                    return
            except queue.Empty:
                if self.process.poll() is not None and self._queue.empty():
                    break
        raise AssertionError(f"never saw {fragment!r}; stderr so far:\n{''.join(self.lines)}")

    def finish(self, timeout: float = WAIT) -> int:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def test_ctrl_c_during_create_leaves_valid_state_and_a_second_create_completes(
        repo: DeployRepo, tmp_path: Path) -> None:
    report_file = tmp_path / "interrupted.json"
    run = Watched(repo.popen("create", "microservice01", "--env", "staging", "--yes",
                             "--report", str(report_file)))
    try:
        run.wait_for("stolon: apply")
        # Once Terraform is under way (a SIGINT in the first ~0.1 s of a terraform process
        # lands in the Python launcher's start-up, before Terraform handles signals).
        time.sleep(0.7)
        run.process.send_signal(signal.SIGINT)
        code = run.finish()
    finally:
        run.kill()
    assert code == 130, run.stdout + run.stderr   # README: 130 interrupted
    assert "Traceback" not in run.stderr
    assert "received SIGINT" in run.stderr
    assert "left behind:" in run.stderr and "run the same `doit create` again" in run.stderr
    report = json.loads(report_file.read_text())["run"]
    assert report["cancelled"] is True
    statuses = {n["node"]: n["status"] for n in report["nodes"]}
    assert statuses["base"] == "succeeded"
    assert statuses["microservice01"] != "succeeded"   # the run stopped before the end

    backend = repo.backend()
    in_states = set()
    for block, status in statuses.items():
        state = backend.read_state("staging", block) or {}   # valid JSON Terraform state
        in_states |= {instance["attributes"]["id"] for resource in state.get("resources", [])
                      if resource["type"] == "localcloud_instance"
                      for instance in resource["instances"]}
        assert backend.lock_holder("staging", block) is None
        record = backend.get_record("staging", block)
        if status == "succeeded":
            assert record is not None and record.status == "deployed"
        else:  # interrupted: never recorded as deployed
            assert record is None or record.status == "failed", (block, record)

    # Nothing runs that Terraform does not know about (it would block the next create).
    assert {i.id for i in repo.instances("staging")} <= in_states

    again = repo.doit("create", "microservice01", "--env", "staging", "--yes", "--report",
                      str(report_file))
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(n["status"] == "succeeded"
               for n in json.loads(report_file.read_text())["run"]["nodes"])
    status = repo.doit("status", "--env", "staging", "--json")
    assert status.returncode == 0, status.stderr
    [staging] = json.loads(status.stdout)
    assert {b["block"]: (b["status"], b["drift"]) for b in staging["blocks"]} == {
        block: ("deployed", "none") for block in ("base", "microservice01", "nomad", "stolon")}


def test_ctrl_c_during_doit_env_still_destroys_everything(repo: DeployRepo,
                                                          tmp_path: Path) -> None:
    report_file = tmp_path / "env.json"
    run = Watched(repo.popen("env", "microservice01", "--report", str(report_file)))
    try:
        run.wait_for("nomad: apply")
        time.sleep(0.7)
        run.process.send_signal(signal.SIGINT)
        run.wait_for("stop instances")             # the teardown stage started
        run.process.send_signal(signal.SIGINT)     # a second Ctrl-C does not stop it
        code = run.finish()
    finally:
        run.kill()
    assert code == 130, run.stdout + run.stderr   # README: 130 interrupted
    assert "interrupt ignored" in run.stdout + run.stderr
    document = json.loads(report_file.read_text())
    assert document["create"]["cancelled"] is True and document["tests"] == []
    assert document["destroy"]["ok"] is True
    assert repo.instances() == [] and repo.volumes() == []
    assert document["environment"] not in repo.backend().list_environments()


def test_two_creates_at_once_the_second_is_refused_with_the_holder(
        repo: DeployRepo, tmp_path: Path) -> None:
    first = Watched(repo.popen("create", "microservice02", "--env", "staging", "--yes"))
    try:
        first.wait_for("base: init")               # the first holds base's lock now
        report_file = tmp_path / "second.json"
        second = repo.doit("create", "microservice02", "--env", "staging", "--yes",
                           "--lock-timeout", "0",
                           "--report", str(report_file))
        code = first.finish()
    finally:
        first.kill()
    assert code == 0, first.stdout + first.stderr

    assert second.returncode == 1, second.stdout + second.stderr
    assert "Traceback" not in second.stderr
    nodes = {n["node"]: n for n in json.loads(report_file.read_text())["run"]["nodes"]}
    error = nodes["base"]["error"]
    assert "block 'base' in environment 'staging' is locked by" in error
    assert f"(pid {first.process.pid}, running `create`) since 20" in error
    assert nodes["nomad"]["status"] == "skipped"

    third = repo.doit("create", "microservice02", "--env", "staging", "--yes", "--report",
                      str(report_file))
    assert third.returncode == 0, third.stdout + third.stderr
    assert {n["detail"]["action"] for n in json.loads(report_file.read_text())["run"]["nodes"]
            } == {"unchanged"}

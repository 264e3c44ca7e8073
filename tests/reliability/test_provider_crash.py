"""The run's local-cloud provider process killed (SIGKILL) in the middle of `doit create`.

Every Terraform command of a `doit` run reaches one provider process (docs/terraform.md
"Providers"). Killed while blocks are being applied: the command fails naming the block and
saying that the provider process ended; no state is corrupt and no lock is left; what the
killed provider created but could not report is not created twice; the same `doit create`
run again starts a new provider, completes, and leaves nothing that no state holds, and no
provider process outlives either command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy_repo import DeployRepo, open_deploy_repo, provider_processes

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

WAIT = 120.0


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    with open_deploy_repo(tmp_path).closing() as deployment:
        yield deployment


def _read_until(process: subprocess.Popen[str], fragment: str, lines: list[str]) -> None:
    assert process.stderr is not None
    deadline = time.monotonic() + WAIT
    for line in process.stderr:
        lines.append(line)
        if fragment in line:
            return
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"never saw {fragment!r}:\n{''.join(lines)}")


def test_a_provider_killed_during_create_fails_the_block_clearly_and_the_next_create_repairs(
        repo: DeployRepo, tmp_path: Path) -> None:
    report_file = tmp_path / "crashed.json"
    run = repo.popen("create", "microservice01", "--env", "staging", "--yes", "--report",
                     str(report_file))
    lines: list[str] = []
    try:
        _read_until(run, "stolon: apply", lines)
        # stolon's apply is creating its members: kill the provider as the first one appears.
        cloud = repo.cloud()
        deadline = time.monotonic() + WAIT
        while not any(i.tags.get("block") == "stolon" or "stolon" in i.name
                      for i in cloud.describe_instances()):
            assert time.monotonic() < deadline, "stolon's instances never appeared"
            time.sleep(0.01)
        [pid] = provider_processes(repo.cloud_root)
        os.kill(pid, signal.SIGKILL)
        rest = threading.Thread(target=lambda: lines.extend(run.stderr or []))
        rest.start()
        stdout = run.stdout.read() if run.stdout else ""
        code = run.wait(timeout=WAIT)
        rest.join(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = stdout + "".join(lines)
    assert code == 1, output
    assert "Traceback" not in output
    assert f"provider process (pid {pid}) ended during the command (killed by SIGKILL)" in output
    assert provider_processes(repo.cloud_root) == []      # the new one, if any, was stopped
    nodes = {n["node"]: n for n in json.loads(report_file.read_text())["run"]["nodes"]}
    assert nodes["base"]["status"] == "succeeded"
    assert nodes["stolon"]["status"] == "failed"
    assert nodes["microservice01"]["status"] != "succeeded"

    backend = repo.backend()
    for block in nodes:
        backend.read_state("staging", block)              # valid JSON Terraform state, or none
        assert backend.lock_holder("staging", block) is None
    record = backend.get_record("staging", "stolon")
    assert record is None or record.status == "failed"

    again = repo.doit("create", "microservice01", "--env", "staging", "--yes", "--report",
                      str(report_file))
    assert again.returncode == 0, again.stdout + again.stderr
    assert provider_processes(repo.cloud_root) == []
    in_states: set[str] = set()
    for block in nodes:
        state = backend.read_state("staging", block) or {}
        in_states |= {instance["attributes"]["id"] for resource in state.get("resources", [])
                      if resource["type"] == "localcloud_instance"
                      for instance in resource["instances"]}
    # Everything that runs is in a state: the killed provider's creates were taken over.
    assert {i.id for i in repo.instances("staging")} == in_states
    volumes_in_states = set()
    for block in nodes:
        state = backend.read_state("staging", block) or {}
        volumes_in_states |= {instance["attributes"]["id"]
                              for resource in state.get("resources", [])
                              if resource["type"] == "localcloud_volume"
                              for instance in resource["instances"]}
    assert {v.id for v in repo.volumes("staging")} == volumes_in_states
    status = repo.doit("status", "--env", "staging", "--json")
    assert status.returncode == 0, status.stderr
    [staging] = json.loads(status.stdout)
    assert {b["block"]: (b["status"], b["drift"]) for b in staging["blocks"]} == {
        block: ("deployed", "none") for block in ("base", "microservice01", "nomad", "stolon")}

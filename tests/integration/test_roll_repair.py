"""`upgrade.engine.roll` for real: a member of base killed with SIGKILL is replaced on its own
volume by the rolling procedure (the API `doit create` uses for a crashed member, issue 9).
A create whose workspace was opened without that procedure (no ``roller``) refuses the
repair with a clear error and changes nothing."""

from __future__ import annotations

import json
import os
import signal

import pytest

from infrablocks.rolling.states import Mode
from infrablocks.upgrade.engine import roll
from infrablocks.waiting import poll
from tests.support.upgrade_env import ENV, UpgradeRepo


@pytest.fixture
def repo():
    repo = UpgradeRepo()
    try:
        yield repo
    finally:
        problems = repo.close()
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.integration
def test_a_killed_member_is_replaced_on_its_volume_and_rejoins(repo):
    repo.create("1.0.0")
    repo.put("/kept/a", "before")
    before, volumes = repo.instances(), repo.volumes()
    victim = before["2"]
    os.kill(victim.pid, signal.SIGKILL)
    assert poll(lambda: repo.cloud().get_instance(victim.id).state != "running", timeout=30,
                interval=0.1).ok, "the killed member still reads as running"
    assert not repo.plan_is_empty()                   # Terraform would create it again

    from infrablocks.deploy.orchestrate import create
    from infrablocks.deploy.workspace import open_workspace

    unchanged = {n: i.id for n, i in repo.instances().items()}
    bare = open_workspace(repo.root)   # no roller given
    try:
        _, refused = create(bare, ["base@1.0.0"], ENV)
    finally:
        bare.close()
    assert refused is not None and not refused.ok
    text = json.dumps(refused.to_json())
    assert "base in up: members up-base-2 must be rolled" in text, text
    assert "opened without the rolling procedure" in text and "Traceback" not in text
    assert {n: i.id for n, i in repo.instances().items()} == unchanged   # nothing made
    assert not repo.plan_is_empty() and repo.record_version() == "1.0.0"
    assert repo.journal() is None

    said: list[str] = []
    workspace = repo.workspace()
    try:
        outcome = roll(workspace, "base", ENV, down=[1], say=said.append)
    finally:
        workspace.close()   # its shared provider process
    assert outcome.mode is Mode.ROLLING and outcome.order == [1]
    assert list(outcome.units[0]["steps"]) == ["stop", "apply", "running", "volume",
                                               "rejoin", "healthy"]
    assert "members down, rolled first: 1" in said
    after = repo.instances()
    assert after["2"].id != victim.id and after["2"].private_ip == victim.private_ip
    assert [after[n].id for n in ("1", "3")] == [before[n].id for n in ("1", "3")]
    assert {n: v.id for n, v in repo.volumes().items()} == {n: v.id for n, v in volumes.items()}
    assert repo.volumes()["2"].attachment.instance_id == after["2"].id
    assert sorted(repo.healthy_members()) == sorted(repo.ips) and repo.member_count() == 3
    assert [repo.get("/kept/a", ip) for ip in repo.ips] == ["before"] * 3
    journal = repo.journal()
    assert journal["status"] == "completed" and journal["kind"] == "repair"
    assert repo.record_version() == "1.0.0"
    assert repo.plan_is_empty()

"""`doit upgrade base` for real: base 1.0.0 → 1.1.0 on the local cloud, one member at a time.

Three units, the leader last, every gate passing, each member on a new instance with the new
image and its old volume (marker file and etcd data kept), the final plan empty, the record and
the journal updated; `--dry-run` changes nothing; a second upgrade has nothing to do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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
def test_rolling_upgrade_of_base_keeps_volumes_and_data(repo):
    repo.create("1.0.0")
    before = repo.instances()
    volumes = repo.volumes()
    old_image = repo.cloud().find_image("etcd", "1.0.0").id
    assert {i.image_id for i in before.values()} == {old_image}
    repo.put("/kept/before-upgrade", "v1")
    for number, volume in volumes.items():          # a file of our own on each data volume
        (Path(volume.path) / "test-marker").write_text(f"member {number}")
    formatted = {n: (Path(v.path) / ".formatted").read_text() for n, v in volumes.items()}
    leader_ip = repo.etcd(repo.ips[0], "/v3/maintenance/status", {})["leader"]
    leader_number = next(n for n, i in before.items()
                         if repo.etcd(i.private_ip, "/v3/maintenance/status", {})
                         ["header"]["member_id"] == leader_ip)

    # -- dry run: the plan, nothing changed ------------------------------------------------
    dry = repo.doit("upgrade", "base", "--env", ENV, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["mode"] == "dry-run"
    assert (plan["from_version"], plan["to_version"]) == ("1.0.0", "1.1.0")
    assert len(plan["plan"]["units"]) == 3 and plan["plan"]["rest"] == []
    assert plan["order"][-1] == int(leader_number) - 1          # the leader last
    assert {n: i.id for n, i in repo.instances().items()} == {n: i.id for n, i in before.items()}
    assert repo.journal() is None

    # -- the upgrade -------------------------------------------------------------------------
    done = repo.upgrade("--json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["mode"] == "rolling"
    assert outcome["order"][-1] == int(leader_number) - 1
    for unit in outcome["units"]:
        assert list(unit["steps"]) == ["gate", "move-leader", "stop", "apply", "running",
                                       "volume", "rejoin", "healthy"]
    assert outcome["timings"]["total"] > 0

    after = repo.instances()
    new_image = repo.cloud().find_image("etcd", "1.1.0").id
    for number in ("1", "2", "3"):
        assert after[number].id != before[number].id
        assert after[number].image_id == new_image
        assert after[number].private_ip == before[number].private_ip
        assert after[number].state == "running" and after[number].ready
    volumes_after = repo.volumes()
    assert {n: v.id for n, v in volumes_after.items()} == {n: v.id for n, v in volumes.items()}
    for number, volume in volumes_after.items():
        assert volume.attachment.instance_id == after[number].id
        data = Path(volume.path)
        assert (data / "test-marker").read_text() == f"member {number}"
        assert (data / ".formatted").read_text() == formatted[number]
        assert (data / ".mounted").read_text().strip() == after[number].id
        console = repo.cloud().console_output(after[number].id, lines=400)
        assert "--initial-cluster-state=existing" in console
    assert sorted(repo.healthy_members()) == sorted(repo.ips)
    assert repo.member_count() == 3
    for ip in repo.ips:
        assert repo.get("/kept/before-upgrade", ip) == "v1"

    assert repo.record_version() == "1.1.0"
    journal = repo.journal()
    assert journal["status"] == "completed"
    assert all(unit["done"] for unit in journal["units"].values())
    assert repo.plan_is_empty()

    again = repo.upgrade()
    assert again.returncode == 0, again.stderr
    assert "already at 1.1.0" in again.stdout


@pytest.fixture
def ci_repo():
    repo = UpgradeRepo()
    try:
        yield repo
    finally:
        from infrablocks.deploy.orchestrate import teardown_environment

        teardown_environment(repo.workspace(), "t-ci")   # if a command died half-way
        problems = repo.close()
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.integration
def test_ci_commands_test_upgrade_and_test_create_leave_nothing_behind(ci_repo):
    result = ci_repo.doit("test-upgrade", "base", "--env", "t-ci", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["from_version"], outcome["to_version"]) == ("1.0.0", "1.1.0")
    assert outcome["ok"] and outcome["created"] and outcome["destroyed"]
    assert outcome["upgrade"]["mode"] == "rolling" and len(outcome["upgrade"]["order"]) == 3
    assert outcome["tests"][0]["ok"] and outcome["tests"][0]["version"] == "1.1.0"
    assert outcome["data_check"]["ok"] and outcome["probe"]["key"]
    assert ci_repo.cloud().describe_instances() == []
    assert ci_repo.cloud().describe_volumes() == []

    created = ci_repo.doit("test-create", "base", "--env", "t-ci")
    assert created.returncode == 0, created.stdout + created.stderr
    assert ci_repo.cloud().describe_instances() == []
    assert "t-ci" not in ci_repo.workspace().backend.list_environments()

    bad = ci_repo.doit("test-upgrade", "base", "--from", "1.1.0")
    assert bad.returncode == 2 and "is not below the target 1.1.0" in bad.stderr


@pytest.fixture
def tag_repo():
    repo = UpgradeRepo()
    block = repo.root / "blocks" / "base" / "1.1.1"
    shutil.copytree(repo.root / "blocks" / "base" / "1.1.0", block)
    main = block / "main.tf"
    main.write_text(main.read_text().replace('role        = "etcd"',
                                             'role        = "etcd"\n    tier        = "quorum"'))
    with (repo.root / "blocks.toml").open("a") as handle:
        handle.write('\n[blocks.base.versions."1.1.1"]\nimages = ["etcd@1.1.0"]\n')
    try:
        yield repo
    finally:
        problems = repo.close()
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.integration
def test_a_version_without_instance_replacements_is_a_plain_apply(tag_repo):
    repo = tag_repo
    repo.create("1.1.0")
    before = repo.instances()
    dry = repo.doit("upgrade", "base", "--env", ENV, "--to", "1.1.1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["mode"] == "plain"
    assert json.loads(dry.stdout)["plan"]["units"] == []
    done = repo.upgrade("--to", "1.1.1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["mode"] == "plain" and outcome["dependents"] == []
    after = repo.instances()
    assert {n: i.id for n, i in after.items()} == {n: i.id for n, i in before.items()}
    assert {i.tags["tier"] for i in after.values()} == {"quorum"}
    assert repo.record_version() == "1.1.1"
    assert repo.journal() is None
    assert repo.plan_is_empty()

"""Choosing an upgrade's target version against what is deployed; the journal; the fault hook."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infrablocks.deploy.workspace import open_workspace
from infrablocks.errors import UsageError
from infrablocks.rolling.journal import Journal
from infrablocks.rolling.outcome import UpgradeRefused
from infrablocks.upgrade.target import choose_target
from tests.support.registry_repo import make_repo, record_deployed

TOML = """
[blocks.base]
stateful = true
[blocks.base.versions."1.0.0"]
[blocks.base.versions."1.1.0"]
[blocks.base.versions."2.0.0"]
requires = { dns = ">= 2.0" }

[blocks.dns.versions."1.0.0"]
[blocks.dns.versions."2.0.0"]

[blocks.app.versions."1.0.0"]
requires = { base = "~> 1.0" }
[blocks.app.versions."2.0.0"]
requires = { base = ">= 1.0" }

[environments.prod]
[environments.pinned]
pins = { base = "1.1.0" }
"""


@pytest.fixture
def workspace(tmp_path):
    return open_workspace(make_repo(tmp_path / "repo", TOML))


def test_the_newest_version_the_dependents_accept(workspace) -> None:
    record_deployed(workspace, "prod", base="1.0.0", app="1.0.0", dns="2.0.0")
    choice = choose_target(workspace, "prod", "base")
    assert (str(choice.current.version), str(choice.target.version)) == ("1.0.0", "1.1.0")


def test_a_target_the_dependents_refuse_lists_them_and_what_would_accept_it(workspace) -> None:
    record_deployed(workspace, "prod", base="1.0.0", app="1.0.0", dns="1.0.0")
    with pytest.raises(UpgradeRefused) as caught:
        choose_target(workspace, "prod", "base", "2.0.0")
    text = str(caught.value)
    assert "upgrading base to 2.0.0 in prod is refused" in text
    assert "app 1.0.0 (deployed) requires base ~> 1.0; versions of app that accept base " \
           "2.0.0: 2.0.0" in text
    assert "base 2.0.0 requires dns >= 2.0, but dns 1.0.0 is deployed" in text


def test_nothing_newer_allowed_is_refused_when_a_newer_version_exists(workspace) -> None:
    record_deployed(workspace, "prod", base="1.1.0", app="1.0.0", dns="2.0.0")
    with pytest.raises(UpgradeRefused, match="no version above 1.1.0 fits the deployed"):
        choose_target(workspace, "prod", "base")


def test_at_the_newest_is_up_to_date(workspace) -> None:
    record_deployed(workspace, "prod", base="2.0.0", dns="2.0.0")
    choice = choose_target(workspace, "prod", "base")
    assert not choice.changes_version


def test_pins_decide_and_a_different_to_is_allowed_and_reports_the_pin(workspace) -> None:
    record_deployed(workspace, "pinned", base="1.0.0", dns="2.0.0")
    assert str(choose_target(workspace, "pinned", "base").target.version) == "1.1.0"
    choice = choose_target(workspace, "pinned", "base", "2.0.0")
    assert str(choice.target.version) == "2.0.0" and choice.pin == "1.1.0"


def test_a_block_not_deployed_cannot_be_upgraded(workspace) -> None:
    with pytest.raises(UsageError, match="base is not deployed in environment prod"):
        choose_target(workspace, "prod", "base")


def test_the_journal_records_steps_and_survives_a_reload(workspace) -> None:
    backend = workspace.backend
    journal = Journal.start(backend, "prod", "base", from_version="1.0.0", to_version="1.1.0",
                            order=[1, 0], markers={1: "m1"})
    journal.step_done(1, "stop", 0.5, old_instance="i-1")
    journal.step_done(1, "stop", 0.1)                       # once only in the steps
    journal.finish_unit(1)
    journal.fail(0, "rejoin", "never joined", {"member": "x"})
    again = Journal.load(backend, "prod", "base")
    assert again.order == [1, 0] and again.marker(1) == "m1" and again.marker(0) is None
    assert again.steps(1) == ["stop"] and again.unit_done(1) and not again.unit_done(0)
    assert again.unit(1)["old_instance"] == "i-1"
    assert again.status == "failed" and again.active
    assert again.failure["step"] == "rejoin"
    again.set_status("completed")
    assert not Journal.load(backend, "prod", "base").active


HOOK = """
from infrablocks.rolling.faults import FaultHook
maybe_die = FaultHook.from_environ()
maybe_die("stop", 0)
print("after stop 0", flush=True)
maybe_die("apply", 1)
print("after apply 1", flush=True)
"""


@pytest.mark.parametrize("fault, printed, code", [
    ("", "after stop 0\nafter apply 1\n", 0),
    ("after:stop:0", "", 137),
    ("after:apply:1", "after stop 0\n", 137),
    ("after:apply:*", "after stop 0\n", 137),
    ("after:apply:2", "after stop 0\nafter apply 1\n", 0),
])
def test_the_fault_hook_exits_137_at_the_named_boundary(fault, printed, code) -> None:
    result = subprocess.run([sys.executable, "-c", HOOK], capture_output=True, text=True,
                            env={"INFRABLOCKS_FAULT": fault, "PATH": "/usr/bin:/bin"},
                            timeout=60, check=False)
    assert (result.returncode, result.stdout) == (code, printed), result.stderr


def test_newer_versions_a_pin_keeps_out_are_named_by_upgrade_and_status(workspace) -> None:
    from infrablocks.deploy.status import environment_status

    record_deployed(workspace, "pinned", base="1.1.0", dns="2.0.0")
    choice = choose_target(workspace, "pinned", "base")
    assert not choice.changes_version
    assert choice.notes == [
        '2.0.0 exists but environments.pinned.pins.base = "1.1.0" (blocks.toml) excludes it: '
        "`doit upgrade base --env pinned --to 2.0.0` upgrades and moves the pin"]
    base = next(b for b in environment_status(workspace, "pinned", drift=False).blocks
                if b.block == "base")
    assert (base.newer_allowed, base.excluded_by_pin, base.pin) == ([], ["2.0.0"], "1.1.0")
    # unpinned: nothing is kept out, and nothing is said
    record_deployed(workspace, "prod", base="1.1.0", dns="2.0.0")
    assert choose_target(workspace, "prod", "base").notes == []
    prod = next(b for b in environment_status(workspace, "prod", drift=False).blocks
                if b.block == "base")
    assert (prod.newer_allowed, prod.excluded_by_pin) == (["2.0.0"], [])


def test_a_downgrade_is_said(workspace) -> None:
    record_deployed(workspace, "prod", base="1.1.0", app="1.0.0", dns="2.0.0")
    choice = choose_target(workspace, "prod", "base", "1.0.0")
    assert choice.downgrade and choice.changes_version
    assert choice.notes == ["base 1.1.0 → 1.0.0 is a DOWNGRADE (to an older version than the "
                            "deployed one)"]
    assert not choose_target(workspace, "prod", "base", "1.1.0").downgrade


def test_status_shows_an_unfinished_upgrade_from_its_journal(workspace) -> None:
    from infrablocks.deploy.status import environment_status

    record_deployed(workspace, "prod", base="1.0.0", dns="2.0.0")
    assert environment_status(workspace, "prod", drift=False).blocks[0].unfinished_upgrade \
        is None
    journal = Journal.start(workspace.backend, "prod", "base", from_version="1.0.0",
                            to_version="1.1.0", order=[2, 0, 1], markers={})
    journal.step_done(2, "stop", 0.5)
    journal.finish_unit(2)
    journal.step_done(0, "gate: cluster healthy", 0.2)
    journal.save()                             # no run holds the block's lock: stopped
    status = environment_status(workspace, "prod", drift=False)
    base = next(b for b in status.blocks if b.block == "base")
    assert base.unfinished_upgrade is not None
    assert {k: base.unfinished_upgrade[k] for k in
            ("state", "status", "from_version", "to_version", "unit", "step", "resume",
             "rollback")} == {
        "state": "interrupted", "status": "running", "from_version": "1.0.0",
        "to_version": "1.1.0", "unit": 0, "step": "gate: cluster healthy",
        "resume": "doit upgrade base --env prod --resume", "rollback": None}
    assert status.to_json()["blocks"][0]["unfinished_upgrade"]["state"] == "interrupted"
    with workspace.backend.acquire_lock("prod", "base", "upgrade"):   # a run goes on
        running = environment_status(workspace, "prod", drift=False).blocks[0]
        assert running.unfinished_upgrade["state"] == "in progress"
    journal.fail(0, "rejoin", "never joined", {})
    halted = next(b for b in environment_status(workspace, "prod", drift=False).blocks
                  if b.block == "base").unfinished_upgrade
    assert (halted["state"], halted["status"], halted["unit"], halted["step"],
            halted["summary"], halted["rollback"]) == (
        "halted", "failed", 0, "rejoin", "never joined",
        "doit upgrade base --env prod --rollback-failed")
    journal.set_status("completed")
    assert environment_status(workspace, "prod", drift=False).blocks[0].unfinished_upgrade \
        is None


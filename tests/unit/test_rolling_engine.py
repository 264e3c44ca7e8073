"""The rolling engine on in-memory fakes: a clean roll, every resume point, every halt, the
rollback, the plain path, and rolls of chosen units (a member that is down).

The fakes (tests/support/rolling_fakes.py) keep the rules the engine depends on — a volume
does not detach from a running instance, a replaced instance keeps its volume — so a step done
out of order or twice shows up in the world, not only in the journal. The same procedures run
for real on the local cloud in tests/integration/test_upgrade_*.py and
tests/reliability/test_upgrade_*.py.
"""

from __future__ import annotations

import pytest

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.rolling.faults import FaultHook
from infrablocks.rolling.journal import Journal
from infrablocks.rolling.outcome import DependentsRefused, UpgradeHalted, UpgradeRefused
from infrablocks.rolling.states import JournalStatus, Mode, RollKind
from infrablocks.upgrade.engine import RollingEngine
from tests.support.rolling_fakes import (
    BLOCK,
    ENV,
    FakeConnection,
    World,
    killed,
    killing,
)

ALL_STEPS = ["gate", "move-leader", "stop", "apply", "running", "volume", "rejoin", "healthy"]
ORDER = [0, 2, 1]          # member 1 leads: it goes last


def start(world: World, to: str = "1.1.0", *, kind: RollKind = RollKind.UPGRADE,
          **options) -> tuple[FakeConnection, object]:
    connection_options = {k: options.pop(k) for k in ("fault", "stateful", "dependents",
                                                      "rolling") if k in options}
    connection = FakeConnection(world, **connection_options)
    outcome = RollingEngine(connection).start(world.record_version(), to, kind=kind, **options)
    return connection, outcome


def journal(world: World) -> Journal:
    loaded = Journal.load(world.backend, ENV, BLOCK)
    assert loaded is not None
    return loaded


def resume(world: World, **options):
    return RollingEngine(FakeConnection(world, **options)).resume(journal(world))


def assert_rolled(world: World, before: dict, image: str = "db-2") -> None:
    """Every member on ``image``, serving, on its own volume with its marker, replaced once."""
    volumes = before["volumes"]
    assert world.images() == dict.fromkeys(range(world.size), image)
    assert world.serving() == list(range(world.size))
    markers = journal(world).data["markers"]
    for index, instance in world.cloud.by_index().items():
        volume = world.cloud.volumes[volumes[index]]
        assert instance.volumes == {"xvdf": volume.id} and volume.attached_to == instance.id
        assert volume.files[".mounted"] == instance.id
        assert volume.files[".infrablocks-upgrade-marker"] == markers[str(index)]
    assert world.cloud.count("run") == world.size       # no member replaced twice
    assert not plan_now(world).has_changes


def plan_now(world: World):  # -> Plan
    """What Terraform would do now at the recorded version."""
    return FakeConnection(world).prepare(world.record_version() or "1.0.0").plan()


def snapshot(world: World) -> dict:
    return {"volumes": dict(world.volumes),
            "instances": {i: inst.id for i, inst in world.cloud.by_index().items()}}


# -- a clean roll ----------------------------------------------------------------------------

def test_a_clean_upgrade_rolls_one_unit_at_a_time_leader_last() -> None:
    world = World.create()
    before = snapshot(world)
    connection, outcome = start(world)
    assert outcome.mode is Mode.ROLLING and outcome.order == ORDER
    assert [u["index"] for u in outcome.units] == ORDER
    assert all(list(u["steps"]) == ALL_STEPS for u in outcome.units)
    assert outcome.members == {0: "db-1", 1: "db-2", 2: "db-3"}
    assert {"terraform", "gates", "stop", "tool", "total"} <= set(outcome.timings)
    assert_rolled(world, before)
    assert world.record_version() == "1.1.0"
    saved = journal(world)
    assert saved.status is JournalStatus.COMPLETED and saved.kind is RollKind.UPGRADE
    assert all(saved.steps(i) == ALL_STEPS for i in ORDER)
    # each old instance was stopped before Terraform detached its volume and replaced it,
    # and leadership left member 1 before it stopped
    history = world.cloud.history
    for old in before["instances"].values():
        assert history.index(("stop", old)) < history.index(("terminate", old))
    assert history.index(("move-leader", "0")) < history.index(("stop", before["instances"][1]))
    assert "[1/3 db-1] gate ✓ (0.0s)" in connection.said
    assert "db is at 1.1.0 in prod" in connection.said


def test_the_rest_is_applied_after_the_units_and_dependents_follow_changed_outputs() -> None:
    world = World.create()
    world.rest = ["fake_thing.config"]
    world.new_outputs = {"endpoint": "db2.prod"}
    reapplied: list[str] = []

    def dependents() -> list[str]:
        reapplied.append("app")
        return ["app"]

    connection, outcome = start(world, dependents=dependents)
    assert outcome.plan.rest == ["fake_thing.config (update)"]
    assert outcome.dependents == ["app"] and reapplied == ["app"]
    assert any(line.startswith("final apply: 1 to update") for line in connection.said)
    assert connection.terraforms[0].applies[-1] == ("all",)


# -- every resume point ----------------------------------------------------------------------

RESUME_POINTS = [f"after:{step}:{index}" for index in ORDER for step in ALL_STEPS] + [
    "after:final-apply", "after:record"]


@pytest.mark.parametrize("fault", RESUME_POINTS)
def test_killed_at_any_step_boundary_then_resumed_ends_as_a_clean_run(fault: str) -> None:
    world = World.create()
    world.rest = ["fake_thing.config"]
    before = snapshot(world)
    with killed():
        start(world, fault=killing(fault))
    saved = journal(world)
    assert saved.status is JournalStatus.RUNNING
    assert world.record_version() == ("1.1.0" if fault == "after:record" else "1.0.0")

    outcome = resume(world)
    assert outcome.mode is Mode.ROLLING and outcome.order == ORDER
    assert journal(world).status is JournalStatus.COMPLETED
    assert world.record_version() == "1.1.0"
    assert_rolled(world, before)
    assert not world.rest


def test_killed_during_a_targeted_apply_then_resumed() -> None:
    """The apply deleted the old instance and died before creating the new one: the resumed
    unit has nothing to stop and its apply creates the member, on the same volume."""
    world = World.create()
    before = snapshot(world)
    world.interrupt = 0
    with killed():
        start(world)
    assert "apply" not in journal(world).steps(0)
    assert 0 not in world.cloud.by_index()
    resume(world)
    assert_rolled(world, before)


def test_two_kills_then_resume() -> None:
    world = World.create()
    before = snapshot(world)
    with killed():
        start(world, fault=killing("after:stop:0"))
    with killed():
        resume(world, fault=killing("after:volume:2"))
    resume(world)
    assert_rolled(world, before)


# -- halts before anything changes -----------------------------------------------------------

def test_a_degraded_cluster_is_refused_before_any_change() -> None:
    world = World.create()
    world.cloud.by_index()[2].state = "stopped"
    with pytest.raises(UpgradeRefused) as refused:
        start(world)
    assert "degraded; nothing was changed" in refused.value.message
    assert "db-3" in refused.value.message and "stopped" in refused.value.message
    assert world.cloud.history == [] and world.backend.journal() is None


def test_an_unhealthy_cluster_is_refused_before_any_change() -> None:
    world = World.create()
    world.cloud.by_index()[0].image = "db-broken"
    with pytest.raises(UpgradeRefused) as refused:
        start(world)
    assert "is not healthy; nothing was changed" in refused.value.message
    assert world.cloud.history == [] and world.backend.journal() is None


def test_rolling_only_some_units_of_a_plan_that_replaces_more_is_refused() -> None:
    world = World.create()
    with pytest.raises(UpgradeRefused) as refused:
        start(world, units=[0])
    assert "also replaces units 1, 2" in refused.value.message
    assert world.cloud.history == [] and world.backend.journal() is None


# -- halts during a unit, and what follows them ----------------------------------------------

def halt(world: World, **options) -> UpgradeHalted:
    with pytest.raises(UpgradeHalted) as halted:
        start(world, **options)
    return halted.value


@pytest.mark.parametrize("gate, breaks", [
    ("running", lambda world: world.cloud.boot_fails.add("db-2")),
    ("volume", lambda world: world.cloud.wipes_volume.add("db-2")),
    ("rejoin", None),                                      # to 1.2.0: db-broken never rejoins
    ("healthy", lambda world: setattr(world.cloud, "on_run", lambda instance: setattr(
        world.cloud.by_index()[2], "state", "stopped"))),  # another member dies meanwhile
])
def test_a_failed_gate_halts_the_unit_and_leaves_the_others_untouched(gate, breaks) -> None:
    world = World.create()
    before = snapshot(world)
    if breaks is not None:
        breaks(world)
    halted = halt(world, to="1.1.0" if breaks else "1.2.0")
    assert halted.failure["unit"] == 0 and halted.failure["step"] == gate
    assert f"halted at unit 0 (db-1), step {gate}" in halted.message
    assert "units not started (untouched): 2, 1" in halted.message
    assert "/fake/logs/terraform" in halted.failure["logs"]
    assert any(log.endswith("console.log") for log in halted.failure["logs"])
    assert "--rollback-failed" in (halted.hint or "")
    saved = journal(world)
    assert saved.status is JournalStatus.FAILED and saved.failure["step"] == gate
    assert saved.steps(0) == ALL_STEPS[:ALL_STEPS.index(gate)]
    for index in (1, 2):                                   # untouched
        assert world.cloud.by_index()[index].id == before["instances"][index]
    assert world.record_version() == "1.0.0"


def test_a_broken_version_is_rolled_back_on_the_same_volume() -> None:
    world = World.create()
    before = snapshot(world)
    halt(world, to="1.2.0")
    assert world.images()[0] == "db-broken"
    connection = FakeConnection(world)
    outcome = RollingEngine(connection).rollback(journal(world))
    assert outcome.mode is Mode.ROLLED_BACK and outcome.order == [0]
    assert (outcome.from_version, outcome.to_version) == ("1.0.0", "1.2.0")
    assert "unit 0 is back on 1.0.0" in outcome.notes[0]
    assert world.images() == dict.fromkeys(range(3), "db-1")
    assert world.serving() == [0, 1, 2]
    assert world.cloud.by_index()[0].volumes == {"xvdf": before["volumes"][0]}
    assert [world.cloud.by_index()[i].id for i in (1, 2)] == [before["instances"][i]
                                                              for i in (1, 2)]
    saved = journal(world)
    assert saved.status is JournalStatus.ROLLED_BACK
    assert saved.data["rollback"] == {"unit": 0, "to": "1.0.0"}
    assert saved.steps(0)[0] != "gate"                     # no cluster gate before a rollback
    assert world.record_version() == "1.0.0"
    assert "rolling unit 0 back to 1.0.0" in connection.said


def test_a_failed_gate_resumed_once_the_cause_is_fixed() -> None:
    world = World.create()
    before = snapshot(world)
    world.cloud.boot_fails.add("db-2")
    halt(world)
    world.cloud.boot_fails.clear()                      # the operator fixed the boot problem
    world.cloud.start_instance(world.cloud.by_index()[0].id, 1.0)
    outcome = resume(world)
    assert outcome.mode is Mode.ROLLING
    assert journal(world).failure is None
    assert_rolled(world, before)


def test_the_cluster_gate_before_a_later_unit_halts_with_it_untouched() -> None:
    world = World.create()
    before = snapshot(world)
    stop_member_1 = FaultHook("after:healthy:0", die=lambda code: setattr(
        world.cloud.by_index()[1], "state", "stopped"))
    halted = halt(world, fault=stop_member_1)
    assert halted.failure["unit"] == 2 and halted.failure["step"] == "gate"
    assert "units not started (untouched): 2, 1" in halted.message
    assert world.cloud.by_index()[2].id == before["instances"][2]
    assert journal(world).unit_done(0) and journal(world).steps(2) == []


def test_a_failed_targeted_apply_halts_and_resumes() -> None:
    world = World.create()
    before = snapshot(world)
    world.fail_apply = {0}
    halted = halt(world)
    assert halted.failure["step"] == "apply" and "apply of member 0 failed" in halted.message
    assert "units not started (untouched): 2, 1" in halted.message
    world.fail_apply.clear()
    resume(world)
    assert_rolled(world, before)


def test_changes_left_behind_halt_the_final_phase_which_has_no_unit_to_roll_back() -> None:
    world = World.create()
    world.sticky_rest = ["fake_thing.drifting"]
    halted = halt(world)
    assert halted.failure["unit"] is None and halted.failure["step"] == "empty-plan"
    assert "halted at the final phase" in halted.message
    assert "fake_thing.drifting (update)" in halted.message
    assert world.record_version() == "1.0.0"
    with pytest.raises(UsageError, match="failed outside a unit"):
        RollingEngine(FakeConnection(world)).rollback(journal(world))
    world.sticky_rest.clear()
    resume(world)
    assert world.record_version() == "1.1.0"
    assert journal(world).status is JournalStatus.COMPLETED


def test_a_failed_dependent_reapply_fails_the_journal_and_resume_retries_it() -> None:
    world = World.create()
    world.rest, world.new_outputs = ["fake_thing.config"], {"endpoint": "db2.prod"}

    def broken() -> list[str]:
        raise InfrablocksError("app: terraform apply failed")

    with pytest.raises(InfrablocksError) as failed:
        start(world, dependents=broken)
    assert "db is at 1.1.0 in prod, but re-applying its dependents failed" in \
        failed.value.message
    saved = journal(world)
    assert saved.status is JournalStatus.FAILED and saved.failure["step"] == "dependents"
    assert world.record_version() == "1.1.0"
    outcome = resume(world, dependents=lambda: ["app"])
    assert outcome.dependents == ["app"]
    assert journal(world).status is JournalStatus.COMPLETED


def test_a_refused_stateful_dependent_completes_the_upgrade() -> None:
    world = World.create()
    world.rest, world.new_outputs = ["fake_thing.config"], {"endpoint": "db2.prod"}

    def refused() -> list[str]:
        raise DependentsRefused("queue would be replaced all at once")

    with pytest.raises(DependentsRefused):
        start(world, dependents=refused)
    assert journal(world).status is JournalStatus.COMPLETED


# -- the plain path --------------------------------------------------------------------------

def test_a_stateful_block_with_nothing_to_roll_gets_one_apply() -> None:
    world = World.create()
    world.rest = ["fake_thing.config"]
    connection, outcome = start(world, to="1.0.1")
    assert outcome.mode is Mode.PLAIN and outcome.order == []
    assert outcome.plan.rest == ["fake_thing.config (update)"]
    assert world.record_version() == "1.0.1" and world.backend.journal() is None
    assert world.cloud.history == []
    assert "apply: 1 to update" in connection.said


def test_a_stateless_block_is_applied_plainly_and_must_leave_nothing_behind() -> None:
    world = World.create(size=0)
    world.rest = ["fake_thing.config"]
    _, outcome = start(world, stateful=False)
    assert outcome.mode is Mode.PLAIN and outcome.members == {}
    assert world.record_version() == "1.1.0"

    world.sticky_rest = ["fake_thing.drifting"]
    with pytest.raises(InfrablocksError, match="changes were left behind after the apply"):
        start(world, to="1.2.0", stateful=False)
    assert world.record_version() == "1.1.0"


# -- rolling chosen units: members that are down (issue 9's create) ---------------------------

def test_a_crashed_member_is_replaced_first_on_its_volume_without_a_gate_before_it() -> None:
    world = World.create()
    before = snapshot(world)
    world.cloud.crash(before["instances"][1])                    # the leader died
    connection, outcome = start(world, to="1.0.0", kind=RollKind.REPAIR, down=[1])
    assert outcome.mode is Mode.ROLLING and outcome.order == [1]
    assert list(outcome.units[0]["steps"]) == ["stop", "apply", "running", "volume",
                                               "rejoin", "healthy"]
    assert world.serving() == [0, 1, 2] and world.images() == dict.fromkeys(range(3), "db-1")
    assert world.cloud.by_index()[1].volumes == {"xvdf": before["volumes"][1]}
    assert [world.cloud.by_index()[i].id for i in (0, 2)] == [before["instances"][i]
                                                              for i in (0, 2)]
    saved = journal(world)
    assert saved.kind is RollKind.REPAIR and saved.down == [1]
    assert saved.status is JournalStatus.COMPLETED and world.record_version() == "1.0.0"
    assert "members down, rolled first: 1" in connection.said


def test_a_down_member_rolls_first_in_an_upgrade_and_the_leader_still_last() -> None:
    world = World.create(leader=2)
    before = snapshot(world)
    world.cloud.crash(before["instances"][0])
    _, outcome = start(world, down=[0])
    assert outcome.order == [0, 1, 2]
    assert_rolled(world, before)


def test_a_stopped_member_with_nothing_to_replace_is_started_again() -> None:
    world = World.create()
    before = snapshot(world)
    world.cloud.by_index()[2].state = "stopped"
    _, outcome = start(world, to="1.0.0", kind=RollKind.REPAIR, down=[2])
    assert list(outcome.units[0]["steps"]) == ["start", "running", "volume", "rejoin",
                                               "healthy"]
    assert world.cloud.by_index()[2].id == before["instances"][2]
    assert world.cloud.count("run") == 0 and world.serving() == [0, 1, 2]


def test_a_repair_killed_half_way_resumes() -> None:
    world = World.create()
    before = snapshot(world)
    world.cloud.crash(before["instances"][0])
    with killed():
        start(world, to="1.0.0", kind=RollKind.REPAIR, down=[0], fault=killing("after:apply:0"))
    resume(world)
    assert world.serving() == [0, 1, 2]
    assert journal(world).status is JournalStatus.COMPLETED


def test_a_repair_still_refuses_when_another_member_is_down_too() -> None:
    world = World.create()
    world.cloud.crash(world.cloud.by_index()[0].id)
    world.cloud.by_index()[1].state = "stopped"
    with pytest.raises(UpgradeRefused, match="degraded"):
        start(world, to="1.0.0", kind=RollKind.REPAIR, down=[0])
    assert world.backend.journal() is None


# -- dry run ---------------------------------------------------------------------------------

def test_dry_run_shows_the_order_and_health_and_changes_nothing() -> None:
    world = World.create()
    outcome = RollingEngine(FakeConnection(world)).dry_run("1.0.0", "1.1.0")
    assert outcome.mode is Mode.DRY_RUN and outcome.order == ORDER
    assert outcome.pre_health == "healthy: 3 members healthy"
    assert [u.index for u in outcome.plan.units] == [0, 1, 2]
    assert world.cloud.history == [] and world.backend.journal() is None
    assert RollingEngine(FakeConnection(world)).dry_run("1.0.0", "1.0.0").mode is \
        Mode.UP_TO_DATE

"""check = "instances": instance-level gates only, through the platform's CloudOps (the moto
flavour's check: moto runs no services). The CloudOps here is an in-memory fake."""

from __future__ import annotations

import pytest

from infrablocks.cloud.ops import CloudNotFoundError, InstanceInfo
from infrablocks.errors import ConfigError
from infrablocks.health import build_check
from infrablocks.health.base import CheckContext, Member


class FakeOps:
    def __init__(self) -> None:
        self.instances: dict[str, InstanceInfo] = {}
        self.volumes: dict[str, str] = {}
        self.ready: set[str] = set()

    def add(self, instance: str, state: str, volume: str | None, ready: bool = True) -> None:
        self.instances[instance] = InstanceInfo(instance, state, "10.0.0.1",
                                                volumes={"xvdf": volume} if volume else {})
        if volume:
            self.volumes[volume] = "in-use"
        if ready:
            self.ready.add(instance)

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        if instance_id not in self.instances:
            raise CloudNotFoundError(f"instance {instance_id} does not exist")
        return self.instances[instance_id]

    def instance_ready(self, instance_id: str) -> bool:
        return instance_id in self.ready

    def volume_state(self, volume_id: str) -> str:
        return self.volumes.get(volume_id, "available")


def member(index: int) -> Member:
    return Member(index=index, name=f"m{index}", instance_address=f"aws_instance.member[{index}]",
                  attachment_address=None, instance_id=f"i-{index}", private_ip="10.0.0.1",
                  volume_id=f"vol-{index}")


def test_healthy_when_every_instance_runs_with_its_volume() -> None:
    ops = FakeOps()
    for i in range(3):
        ops.add(f"i-{i}", "running", f"vol-{i}")
    check = build_check("instances", CheckContext(block="base", environment="e", ops=ops))
    members = [member(i) for i in range(3)]
    health = check.cluster_health(members)
    assert health.ok and "3 instances running (instance-level gates only)" in health.summary
    assert check.leader(members) is None
    assert check.member_healthy(members[1], members).ok
    check.move_leader_off(members[0], members)   # nothing to move


def test_a_stopped_unready_or_volumeless_member_fails_with_its_name() -> None:
    ops = FakeOps()
    ops.add("i-0", "stopped", "vol-0")
    ops.add("i-1", "running", "vol-1", ready=False)
    ops.add("i-2", "running", None)
    check = build_check("instances", CheckContext(block="base", environment="e", ops=ops))
    members = [member(i) for i in range(3)]
    health = check.cluster_health(members)
    assert not health.ok
    assert "m0 (i-0) is stopped" in health.summary
    assert "m1 (i-1) runs but has not finished booting" in health.summary
    assert not check.member_healthy(members[2], members).ok
    assert "vol-2" in check.member_healthy(members[2], members).summary
    assert not check.cluster_health([]).ok


def test_it_needs_the_platforms_steps() -> None:
    with pytest.raises(ConfigError) as raised:
        build_check("instances", CheckContext(block="base", environment="e"))
    assert "needs the platform's steps" in str(raised.value)

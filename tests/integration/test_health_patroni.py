"""The built-in ``patroni`` check against a real Patroni/PostgreSQL cluster: the stolon block
(base's etcd as DCS) deployed with real Terraform on the local cloud.

Healthy cluster → the gates pass and name the leader; a stopped replica → the cluster gate fails
with the replica in its evidence, the member gate fails, the leader is still found; the replica
started again → healthy; ``move_leader_off`` is a no-op on a replica and a real switchover on
the leader (and a clear error when no replica could take over); a probe row written before is
read back from every member after all of it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infrablocks.health import build_check
from infrablocks.health.base import CheckContext, GateResult, Member
from infrablocks.health.patroni import PatroniCheck, PatroniError
from infrablocks.waiting import poll
from tests.support.subnets import hold_during_module

ENVIRONMENT = "t-patroni-check"
SUBNET = "127.42.241.0/24"
held_subnets = hold_during_module("127.42.249.0/24")   # stray instances (.201, .202)
CONVERGE_SECONDS = 120


def members_of(stolon) -> list[Member]:
    """The stolon deployment's instance group, as the rolling engine reads it."""
    volumes = {v.tags["member"]: v.id for v in stolon.volumes()}
    members = []
    for instance in sorted(stolon.instances(), key=lambda i: int(i.tags["member"])):
        index = int(instance.tags["member"]) - 1
        members.append(Member(
            index=index, name=instance.name,
            instance_address=f"localcloud_instance.member[{index}]",
            attachment_address=f"localcloud_volume_attachment.member[{index}]",
            instance_id=instance.id, private_ip=instance.private_ip,
            volume_id=volumes[instance.tags["member"]]))
    return members


def eventually(gate: Callable[[], GateResult], seconds: float = CONVERGE_SECONDS) -> GateResult:
    """Poll a gate as the rolling engine does; the last result when it never passes."""
    return poll(gate, lambda result: result.ok, timeout=seconds, interval=1).value


@pytest.fixture
def stolon(deploy_block, local_cloud):
    base = deploy_block("base", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET)
    deployment = deploy_block(
        "stolon", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET,
        inputs={"base": {"endpoints": base["endpoints"], "cluster_name": base["cluster_name"]}})
    for instance in deployment.instances():
        local_cloud.wait_until_ready(instance.id, timeout=180)
    return deployment


def test_nobody_answering_is_a_failed_gate_naming_every_member():
    members = [Member(index=i, name=f"m{i}", instance_address=f"x.m[{i}]",
                      attachment_address=None, instance_id=f"i-{i}",
                      private_ip=f"127.42.249.{201 + i}") for i in range(2)]
    check = PatroniCheck(CheckContext(block="stolon", environment="t",
                                      options={"request_timeout": 1}))
    result = check.cluster_health(members)
    assert not result.ok
    assert "no member answers GET /cluster" in result.summary
    for member in members:
        assert f"{member.name}: GET http://{member.private_ip}:8008/patroni" in result.summary
        assert "error" in result.evidence["members"][member.name]
    assert check.leader(members) is None
    assert not check.member_healthy(members[0], members).ok
    check.move_leader_off(members[0], members)      # nobody leads: nothing to move


@pytest.mark.slow
@pytest.mark.integration
def test_gates_on_a_real_patroni_cluster(stolon, local_cloud):
    members = members_of(stolon)
    context = CheckContext(block="stolon", environment=ENVIRONMENT,
                           options={"max_lag_bytes": 1048576}, outputs=dict(stolon))
    check = build_check("patroni", context)
    assert isinstance(check, PatroniCheck)

    # -- healthy: one leader, two streaming replicas ----------------------------------------
    healthy = eventually(lambda: check.cluster_health(members))
    assert healthy.ok, healthy
    leader = check.leader(members)
    assert leader is not None and leader in members
    assert f"leader {leader.name}" in healthy.summary
    assert {row["host"] for row in healthy.evidence["cluster"]} == \
        {m.private_ip for m in members}
    streaming = {r["application_name"] for r in
                 healthy.evidence["members"][leader.name]["replication"]
                 if r["state"] == "streaming"}
    replicas = [m for m in members if m is not leader]
    assert streaming == {m.name for m in replicas}
    lags = healthy.evidence["replica_lag_bytes"]
    assert set(lags) == {m.name for m in replicas}
    assert all(isinstance(lag, int) and 0 <= lag <= 1048576 for lag in lags.values()), lags
    for member in members:
        assert check.member_healthy(member, members).ok
    probe = check.write_probe(members)
    assert eventually(lambda: check.verify_probe(members, probe), 30).ok

    # -- a replica on a stopped instance: unhealthy, with the evidence ----------------------
    stopped = replicas[0]
    check.move_leader_off(stopped, members)          # not the leader: nothing happens
    assert check.leader(members) == leader
    local_cloud.stop_instance(stopped.instance_id, grace=15)
    degraded = check.cluster_health(members)
    assert not degraded.ok
    assert f"{stopped.name}: GET http://{stopped.private_ip}:8008/patroni" in degraded.summary
    # Patroni marks a cleanly stopped member 'stopped' in the DCS until its key expires
    assert (f"replica {stopped.name} is 'stopped'" in degraded.summary
            or f"{stopped.name} ({stopped.private_ip}) is not in the cluster"
            in degraded.summary), degraded.summary
    assert "error" in degraded.evidence["members"][stopped.name]
    rejoined = check.member_healthy(stopped, members)
    assert not rejoined.ok and rejoined.summary.startswith(f"{stopped.name} does not answer")
    assert check.leader(members) == leader

    # -- started again (same volume): it rejoins and the cluster is healthy -----------------
    local_cloud.start_instance(stopped.instance_id)
    rejoined = eventually(lambda: check.member_healthy(stopped, members))
    assert rejoined.ok, rejoined
    assert "rejoined as a replica streaming from" in rejoined.summary
    assert eventually(lambda: check.cluster_health(members)).ok

    # -- switchover: the leadership moves to a healthy replica ------------------------------
    check.move_leader_off(leader, members)
    new_leader = check.leader(members)
    assert new_leader is not None and new_leader != leader
    assert check.member_healthy(new_leader, members).summary == f"{new_leader.name} leads " \
        "the cluster"
    after = eventually(lambda: check.cluster_health(members))
    assert after.ok, after
    assert check.leader(members) == new_leader
    assert check.member_healthy(leader, members).ok        # the old leader is a replica now
    assert check.verify_probe(members, probe).ok           # the data written before is there

    # -- nobody to hand the leadership to: a clear error, and the leader stays --------------
    for member in members:
        if member != new_leader:
            local_cloud.stop_instance(member.instance_id, grace=15)
    with pytest.raises(PatroniError, match=f"cannot move the leadership off "
                                           f"{new_leader.name}: no other member is a healthy "
                                           "streaming replica"):
        check.move_leader_off(new_leader, members)
    assert check.leader(members) == new_leader

"""The stolon block for real: base's etcd (the base block) as DCS, Terraform creates the
3-member Patroni/PostgreSQL cluster on the local cloud, its block tests pass (leader, streaming
replicas, write on the primary read on the replicas), every member is replaced by the patroni
1.1.0 image one at a time (replicas first, leader last) keeping its volume and data, and
destroy leaves nothing behind.

PostgreSQL runs as the ``postgres`` user, which must reach the volumes inside the cloud's root:
the shared ``local_cloud`` fixture puts the cloud under a world-traversable directory for that
(pytest's tmp_path, under /tmp/pytest-of-root, is mode 700).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.process import is_alive, read_stat

ENVIRONMENT = "t-stolon"
SUBNET = "127.42.221.0/24"
MEMBER_IPS = ["127.42.221.21", "127.42.221.22", "127.42.221.23"]
PSQL = "/usr/bin/psql"


def base_inputs(base) -> dict[str, object]:
    return {"base": {"endpoints": base["endpoints"], "cluster_name": base["cluster_name"]}}


def psql(stolon, host: str, sql: str) -> str:
    result = subprocess.run(
        [PSQL, f"host={host} port=5432 user=postgres dbname=postgres connect_timeout=5",
         "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PGPASSWORD": stolon["superuser_password"]})
    assert result.returncode == 0, f"psql on {host}: {result.stderr.strip()}"
    return result.stdout.strip()


def patroni(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def roles(stolon) -> dict[str, str]:
    """host → Patroni role, as the cluster reports it."""
    members = patroni(f"{stolon['patroni_api_urls'][0]}/cluster")["members"]
    return {m["host"]: m["role"] for m in members}


def host_with_role(stolon, role: str) -> str:
    return next(host for host, r in roles(stolon).items() if r == role)


def wait_ready(cloud: LocalCloud, deployment, timeout: float = 180) -> dict[str, object]:
    members = {i.tags["member"]: i for i in deployment.instances()}
    for instance in members.values():
        cloud.wait_until_ready(instance.id, timeout=timeout)
    return members


@pytest.mark.slow
@pytest.mark.integration
def test_stolon_cluster_create_rolling_replace_by_1_1_0_destroy(deploy_block, local_cloud):
    base = deploy_block("base", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET)
    stolon = deploy_block("stolon", "1.0.0", inputs=base_inputs(base),
                          environment=ENVIRONMENT, subnet_cidr=SUBNET)

    # -- created: 3 members with their own volumes; leader + streaming replicas ------------
    assert stolon["hosts"] == MEMBER_IPS
    assert stolon["port"] == 5432 and stolon["superuser"] == "postgres"
    assert len(stolon["superuser_password"]) == 32
    assert stolon["scope"] == f"{ENVIRONMENT}-stolon"
    members = wait_ready(local_cloud, stolon)
    assert sorted(members) == ["1", "2", "3"]
    for number, instance in members.items():
        assert instance.tags == {"environment": ENVIRONMENT, "block": "stolon",
                                 "role": "postgresql", "member": number}
        assert instance.private_ip == MEMBER_IPS[int(number) - 1]
    volumes = {v.tags["member"]: v for v in stolon.volumes()}
    assert {n: v.attachment.instance_id for n, v in volumes.items()} == \
        {n: i.id for n, i in members.items()}

    result = stolon.run_block_tests()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout

    # the passwords are generated once and kept: a second plan changes nothing
    second = stolon.plan()
    assert second.changes == [], second.summary()

    # -- rolling replacement by the 1.1.0 image, replicas first, leader last ---------------
    # each member: stop, targeted apply of its instance + attachment; its volume and data stay
    leader = host_with_role(stolon, "leader")
    psql(stolon, leader, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before-upgrade')")
    by_ip = {i.private_ip: n for n, i in members.items()}
    replicas = [by_ip[host] for host, role in roles(stolon).items() if role == "replica"]
    order = [*replicas, by_ip[leader]]
    assert len(order) == 3
    for step, number in enumerate(order):
        index = int(number) - 1
        ip = MEMBER_IPS[index]
        data = Path(volumes[number].path)
        filesystem_id = (data / ".formatted").read_text()
        assert psql(stolon, ip, "SHOW work_mem") == "4MB"
        old = next(i for i in stolon.instances() if i.tags["member"] == number)

        local_cloud.stop_instance(old.id, grace=15)
        stolon.apply("1.1.0", targets=[f"localcloud_instance.member[{index}]",
                                       f"localcloud_volume_attachment.member[{index}]"])
        new_image = local_cloud.find_image("patroni", "1.1.0")    # built by that apply
        new = next(i for i in stolon.instances() if i.tags["member"] == number)
        assert new.id != old.id and new.image_id == new_image.id and new.private_ip == ip
        local_cloud.wait_until_ready(new.id, timeout=180)
        assert local_cloud.get_volume(volumes[number].id).attachment.instance_id == new.id
        assert (data / ".formatted").read_text() == filesystem_id
        assert (data / ".mounted").read_text().strip() == new.id

        assert psql(stolon, ip, "SHOW work_mem") == "16MB"          # 1.1.0's configuration
        assert psql(stolon, ip, "SELECT pg_is_in_recovery()") == "t"  # rejoined as a replica
        deadline = time.monotonic() + 30
        while psql(stolon, ip, "SELECT v FROM kept") != "before-upgrade":
            assert time.monotonic() < deadline, f"member {number} did not catch up"
            time.sleep(0.5)
        if step == 0:
            # mixed cluster: all but 1.1.0's "every member runs 1.1.0's settings" check hold
            result = stolon.run_block_tests(extra_args=["-k", "not this_version"])
            assert result.returncode == 0, result.stdout + result.stderr
            assert "3 passed, 1 deselected" in result.stdout

    assert host_with_role(stolon, "leader") != leader                 # leadership moved
    assert {i.image_id for i in stolon.instances()} == {new_image.id}
    result = stolon.run_block_tests()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert stolon.plan().changes == []

    # -- destroy leaves nothing: no instances, processes, volumes ---------------------------
    pids = [(i.pid, read_stat(i.pid)[1]) for i in stolon.instances() if i.pid]
    assert len(pids) == 3
    stolon.destroy()
    assert stolon.instances() == [] and stolon.volumes() == []
    assert not any(is_alive(pid, started) for pid, started in pids)
    assert not postgres_processes_under(local_cloud.root)
    assert stolon.state_addresses() == []


def postgres_processes_under(root: Path) -> list[str]:
    """Command lines of PostgreSQL / Patroni processes whose data is under ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(root) in command and ("postgres" in command or "patroni" in command):
            found.append(f"{entry.name}: {command}")
    return found

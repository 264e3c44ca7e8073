"""The built-in checks against real services: an etcd cluster of two members, an HTTP server,
and the platform gates (instance running, volume back with its marker) on a real local cloud."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.ops import LocalCloudOps
from infrablocks.cloud.ops import CloudNotFoundError, CloudTimeoutError
from infrablocks.health.base import CheckContext, Member
from infrablocks.health.etcd import EtcdCheck
from infrablocks.health.http import HttpCheck
from infrablocks.health.instance import instance_running, volume_back
from infrablocks.rolling.gates import poll_gate
from tests.support.localcloud import terminating_cloud, write_artifact

ETCD_IPS = ["127.42.239.21", "127.42.239.22"]


def member(index: int, ip: str, name: str | None = None, **extra) -> Member:
    return Member(index, name or f"e{index}", f"localcloud_instance.member[{index}]", None,
                  f"i-{index}", ip, **extra)


@pytest.fixture
def etcd_cluster() -> Iterator[list[Member]]:
    root = Path(tempfile.mkdtemp(prefix="infrablocks-etcd-check-"))
    cluster = ",".join(f"e{i}=http://{ip}:2380" for i, ip in enumerate(ETCD_IPS))
    processes = []
    try:
        for i, ip in enumerate(ETCD_IPS):
            log = (root / f"e{i}.log").open("w")
            processes.append(subprocess.Popen(
                ["/usr/bin/etcd", f"--name=e{i}", f"--data-dir={root / f'e{i}'}",
                 f"--listen-client-urls=http://{ip}:2379",
                 f"--advertise-client-urls=http://{ip}:2379",
                 f"--listen-peer-urls=http://{ip}:2380",
                 f"--initial-advertise-peer-urls=http://{ip}:2380",
                 f"--initial-cluster={cluster}", "--initial-cluster-token=check-test"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        members = [member(i, ip) for i, ip in enumerate(ETCD_IPS)]
        healthy, _ = poll_gate(lambda: EtcdCheck().cluster_health(members), 30, 0.2)
        assert healthy.ok, healthy
        yield members
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_etcd_health_leader_rejoin_and_leader_move(etcd_cluster) -> None:
    check = EtcdCheck(CheckContext("base", "t"))
    members = etcd_cluster
    health = check.cluster_health(members)
    assert health.ok and "2 members healthy" in health.summary
    assert set(health.evidence["members"]) == {"e0", "e1"}
    leader = check.leader(members)
    assert leader in members
    assert check.member_healthy(members[0], members).ok
    check.move_leader_off(leader, members)
    moved, _ = poll_gate(lambda: _leader_is_not(check, members, leader), 15, 0.2)
    assert moved.ok, moved
    follower = next(m for m in members if m is not check.leader(members))
    check.move_leader_off(follower, members)          # not the leader: nothing happens
    assert check.leader(members) is not follower

    # a third member the cluster does not know of: degraded, with evidence
    ghost = member(2, "127.42.239.23", "e2")
    degraded = check.cluster_health([*members, ghost])
    assert not degraded.ok
    assert "e2:" in degraded.summary and "expected 3" in degraded.summary
    assert "error" in degraded.evidence["members"]["e2"]
    assert not check.member_healthy(ghost, [*members, ghost]).ok

    probe = check.write_probe(members)
    assert check.verify_probe(members, probe).ok
    assert not check.verify_probe(members, {"key": probe["key"], "value": "other"}).ok


def _leader_is_not(check, members, old):
    from infrablocks.health.base import GateResult

    now = check.leader(members)
    return GateResult(now is not None and now is not old, f"leader {now}")


@pytest.fixture
def http_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.42.239.31", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_check_wants_the_expected_status_from_every_member(http_server) -> None:
    up = member(0, "127.42.239.31")
    down = member(1, "127.42.239.32")
    check = HttpCheck(CheckContext("web", "t", options={"port": http_server}))
    assert check.cluster_health([up]).ok
    result = check.cluster_health([up, down])
    assert not result.ok and "e1" in result.summary and "error" in result.evidence["members"]["e1"]
    assert check.leader([up]) is None
    wrong = HttpCheck(CheckContext("web", "t", options={"port": http_server, "path": "/x"}))
    assert not wrong.member_healthy(up, [up]).ok


IDLE = r"""#!/bin/sh
trap 'rm -f "$LOCALCLOUD_DEVICES_DIR/xvdf/.mounted"; exit 0' TERM
i=0
while [ ! -d "$LOCALCLOUD_DEVICES_DIR/xvdf" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "$LOCALCLOUD_INSTANCE_ID" > "$LOCALCLOUD_DEVICES_DIR/xvdf/.mounted"
touch "$LOCALCLOUD_INSTANCE_DIR/ready"
while :; do sleep 0.1; done
"""


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with terminating_cloud(tmp_path / "cloud") as cloud:
        yield cloud


def test_local_cloud_ops_and_the_platform_gates(cloud, tmp_path) -> None:
    image = cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact", IDLE))
    volume = cloud.create_volume(name="data", size_gb=1)
    instance = cloud.run_instance(name="m0", image_id=image.id, private_ip="127.42.239.41")
    cloud.attach_volume(volume.id, instance.id, "xvdf")
    ops = LocalCloudOps(cloud)
    m0 = member(0, "127.42.239.41", "m0")
    m0.instance_id, m0.volume_id = instance.id, volume.id

    assert poll_gate(lambda: instance_running(ops, m0), 10, 0.1)[0].ok
    info = ops.describe_instance(instance.id)
    assert (info.state, info.volumes, info.private_ip) == ("running", {"xvdf": volume.id},
                                                          "127.42.239.41")
    assert info.console_log.endswith("console.log")
    ops.write_volume_marker(volume.id, "marker", "kept")
    assert poll_gate(lambda: volume_back(ops, m0, "marker", "kept"), 10, 0.1)[0].ok
    lost = volume_back(ops, m0, "marker", "other")
    assert not lost.ok and "lost its data" in lost.summary

    ops.stop_instance(instance.id, timeout=10)
    assert ops.describe_instance(instance.id).state == "stopped"
    stopped = instance_running(ops, m0)
    assert not stopped.ok and "is stopped" in stopped.summary
    assert not volume_back(ops, m0, "marker", "kept").ok          # not mounted any more
    ops.stop_instance(instance.id, timeout=10)                     # stopping twice: no-op
    with pytest.raises(CloudTimeoutError, match="waiting for available"):
        ops.wait_volume_state(volume.id, "available", timeout=0.3)  # still attached
    cloud.detach_volume(volume.id, instance.id)
    ops.wait_volume_state(volume.id, "available", timeout=5)
    cloud.attach_volume(volume.id, instance.id, "xvdf")
    ops.start_instance(instance.id, timeout=10)   # raises CloudTimeoutError past the timeout
    assert poll_gate(lambda: volume_back(ops, m0, "marker", "kept"), 10, 0.1)[0].ok
    with pytest.raises(CloudNotFoundError):
        ops.describe_instance("i-00000000deadbeef")
    with pytest.raises(CloudNotFoundError):
        ops.volume_state("vol-00000000deadbeef")

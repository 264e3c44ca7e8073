"""The base block for real: Terraform creates the 3-member etcd cluster on the local cloud, one
member is replaced by the etcd 1.1.0 image keeping its volume and data, and destroy leaves
nothing behind. Also the block-test plugin (``-p infrablocks.blocktests``) end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infrablocks.cloud.local.process import is_alive, read_stat

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = "t-base"
SUBNET = "127.42.212.0/24"
MEMBER_IPS = ["127.42.212.11", "127.42.212.12", "127.42.212.13"]
ETCDCTL = "/usr/bin/etcdctl"


def etcdctl(endpoints: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ETCDCTL, f"--endpoints={','.join(endpoints)}",
                           "--command-timeout=5s", *args], capture_output=True, text=True,
                          timeout=30, check=False, env={**os.environ, "ETCDCTL_API": "3"})


def members_by_number(deployment) -> dict[str, object]:
    return {i.tags["member"]: i for i in deployment.instances()}


@pytest.mark.slow
@pytest.mark.integration
def test_base_cluster_create_replace_one_member_destroy(deploy_block, local_cloud):
    base = deploy_block("base", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET)

    # -- created: 3 members, each with its own volume, healthy cluster ---------------------
    assert base["member_ips"] == MEMBER_IPS
    assert base["endpoints"] == [f"http://{ip}:2379" for ip in MEMBER_IPS]
    assert base["cluster_name"] == f"base-{ENVIRONMENT}"
    members = members_by_number(base)
    assert sorted(members) == ["1", "2", "3"]
    old_image = local_cloud.find_image("etcd", "1.0.0")
    for number, instance in members.items():
        assert instance.image_id == old_image.id
        assert instance.tags == {"environment": ENVIRONMENT, "block": "base", "role": "etcd",
                                 "member": number}
        local_cloud.wait_until_ready(instance.id, timeout=60)
    volumes = {v.tags["member"]: v for v in base.volumes()}
    assert {n: v.attachment.instance_id for n, v in volumes.items()} == \
        {n: i.id for n, i in members.items()}

    result = base.run_block_tests()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert base.plan().changes == []                        # converged: nothing to do

    assert etcdctl(base["endpoints"], "put", "/base/kept", "before-upgrade").returncode == 0
    member1_data = Path(volumes["1"].path)
    filesystem_id = (member1_data / ".formatted").read_text()

    # -- replace member 1 by the 1.1.0 image: stop it, targeted apply ----------------------
    local_cloud.stop_instance(members["1"].id, grace=15)
    base.apply("1.1.0", targets=["localcloud_instance.member[0]",
                                 "localcloud_volume_attachment.member[0]"])
    new_image = local_cloud.find_image("etcd", "1.1.0")
    after = members_by_number(base)
    assert after["1"].id != members["1"].id
    assert after["1"].image_id == new_image.id
    assert after["1"].private_ip == MEMBER_IPS[0]
    assert [after[n].id for n in ("2", "3")] == [members[n].id for n in ("2", "3")]
    assert {after[n].image_id for n in ("2", "3")} == {old_image.id}
    local_cloud.wait_until_ready(after["1"].id, timeout=60)

    volume1 = local_cloud.get_volume(volumes["1"].id)         # the same volume, re-attached
    assert volume1.attachment.instance_id == after["1"].id
    assert (member1_data / ".formatted").read_text() == filesystem_id
    assert (member1_data / ".mounted").read_text().strip() == after["1"].id
    console = local_cloud.console_output(after["1"].id, lines=400)
    assert "--initial-cluster-state=existing" in console
    assert "--heartbeat-interval=150" in console

    health = etcdctl([base["endpoints"][0]], "endpoint", "health", "--cluster")
    assert health.returncode == 0, health.stderr
    got = etcdctl([base["endpoints"][0]], "get", "/base/kept", "--print-value-only")
    assert got.stdout.strip() == "before-upgrade", got.stderr
    members_list = json.loads(etcdctl(base["endpoints"], "member", "list", "-w", "json").stdout)
    assert len(members_list["members"]) == 3               # rejoined, not added as a 4th
    result = base.run_block_tests()
    assert result.returncode == 0, result.stdout + result.stderr

    # The rest of the upgrade would replace members 2 and 3 the same way, volumes untouched.
    rest = base.plan("1.1.0")
    assert sorted(rest.addresses("replace")) == [
        "localcloud_instance.member[1]", "localcloud_instance.member[2]",
        "localcloud_volume_attachment.member[1]", "localcloud_volume_attachment.member[2]"]
    assert [c.address for c in rest.changes if c.type == "localcloud_volume"] == []

    # -- destroy leaves nothing: no instances, processes, volumes or folders ---------------
    pids = [(i.pid, read_stat(i.pid)[1]) for i in base.instances() if i.pid]
    assert len(pids) == 3
    base.destroy()
    assert local_cloud.describe_instances() == []
    assert local_cloud.describe_volumes() == []
    assert not any(is_alive(pid, started) for pid, started in pids)
    assert [p.name for p in local_cloud.instances_dir.iterdir()] == []
    assert [p.name for p in local_cloud.volumes_dir.iterdir()] == []
    assert base.state_addresses() == []


def run_block_tests_without_deployment(tmp_path: Path, env: dict[str, str]
                                       ) -> subprocess.CompletedProcess[str]:
    tests = REPO_ROOT / "blocks" / "base" / "1.0.0" / "tests"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "infrablocks.blocktests", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("setting, expected", [
    (None, "INFRABLOCKS_BLOCK_OUTPUTS is not set"),
    ("missing.json", "missing.json: no such file"),
    ("broken.json", "broken.json: not a JSON file"),
])
def test_block_tests_without_outputs_fail_with_a_clear_message(tmp_path, setting, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRABLOCKS_")}
    (tmp_path / "broken.json").write_text("{not json")
    if setting is not None:
        env["INFRABLOCKS_BLOCK_OUTPUTS"] = str(tmp_path / setting)
    result = run_block_tests_without_deployment(tmp_path, env)
    assert result.returncode == 1
    assert expected in result.stdout
    assert "Traceback" not in result.stdout and "blocktests.py" not in result.stdout


PLUGIN_PROBE = '''
def test_outputs(outputs):
    assert outputs == {"endpoints": ["http://127.42.212.11:2379"], "password": "s3cret"}


def test_dependency_outputs(dependency_outputs):
    assert dependency_outputs == {"base": {"cluster_name": "base-t", "member_ips": ["a"]}}
'''


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "terraform-output-json"])
def test_block_test_plugin_reads_both_output_shapes(tmp_path, wrapped):
    def shape(values: dict, sensitive: frozenset = frozenset()) -> dict:
        if not wrapped:
            return values
        return {k: {"value": v, "type": "string", "sensitive": k in sensitive}
                for k, v in values.items()}

    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_probe.py").write_text(PLUGIN_PROBE)
    (tmp_path / "outputs.json").write_text(json.dumps(shape(
        {"endpoints": ["http://127.42.212.11:2379"], "password": "s3cret"},
        frozenset({"password"}))))
    (tmp_path / "deps.json").write_text(json.dumps(
        {"base": shape({"cluster_name": "base-t", "member_ips": ["a"]})}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFRABLOCKS_")},
           "INFRABLOCKS_BLOCK_OUTPUTS": str(tmp_path / "outputs.json"),
           "INFRABLOCKS_DEPENDENCY_OUTPUTS": str(tmp_path / "deps.json")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "infrablocks.blocktests", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

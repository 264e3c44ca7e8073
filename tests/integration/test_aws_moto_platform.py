"""The AWS platform end to end: real Terraform with the real hashicorp/aws provider against moto
server on a loopback port, driven by the ``doit`` commands.

moto runs no services, so the moto flavour declares instance-level gates only (``check =
"instances"`` in base's AWS rolling declaration): the tests' names say ``instance_gates``. The
AMIs are registered with the packer templates' names and tags (packer's amazon-ebs cannot build
against moto), so the blocks run the same ``data "aws_ami"`` lookup as on AWS. The tests skip
only where no hashicorp/aws provider can be installed (no filesystem mirror holds it; they never
download it). See tests/support/aws_moto.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from tests.support.aws_moto import (
    Ec2Poller,
    aws_behaviour_on_terminate,
    aws_provider_mirror,
    ec2_client,
    members,
    open_aws_repo,
    processes_under,
    register_images,
    rolling_problems,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.aws]

IMAGES = ["etcd@1.0.0", "etcd@1.1.0", "nomad@1.0.0"]


@pytest.fixture(scope="module")
def mirror():
    found = aws_provider_mirror()
    if found is None:
        pytest.skip("no hashicorp/aws provider can be installed here: no filesystem mirror "
                    "holds registry.terraform.io/hashicorp/aws (set "
                    "INFRABLOCKS_TEST_PROVIDER_MIRROR); these tests never download it")
    return found


@pytest.fixture(scope="module")
def moto(moto_endpoint):
    """moto with AWS's terminate behaviour for network interfaces, and the images' AMIs."""
    with aws_behaviour_on_terminate():
        amis = register_images(ec2_client(moto_endpoint), IMAGES)
        yield moto_endpoint, amis


def ok(result, what: str) -> str:
    assert result.returncode == 0, f"{what}: exit {result.returncode}\n{result.stdout}\n" \
                                   f"{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_aws_moto_base_and_nomad_created_upgraded_destroyed_instance_gates(
        tmp_path, moto, mirror):
    endpoint, amis = moto
    env = f"awsprod-{uuid.uuid4().hex[:6]}"
    repo = open_aws_repo(tmp_path, endpoint, mirror, extra_toml=f"""
[environments.{env}]
platform = "moto"
pins = {{ base = "1.0.0" }}
""")
    try:
        checked = ok(repo.doit("check"), "doit check")
        assert "AWS modules: terraform validate passed" in checked
        assert "registry.terraform.io/hashicorp/aws from mirror" in checked

        planned = ok(repo.doit("plan", "nomad", "--env", env), "doit plan")
        assert "would be created after base" in planned

        ok(repo.doit("create", "nomad", "--env", env), "doit create")
        status = json.loads(ok(repo.doit("status", "--env", env, "--json"), "doit status"))
        deployed = {b["block"]: b for b in status[0]["blocks"]}
        assert {b: d["version"] for b, d in deployed.items()} == {"base": "1.0.0",
                                                                   "nomad": "1.0.0"}
        assert {d["drift"] for d in deployed.values()} == {"none"}, deployed
        outputs = json.loads(ok(repo.doit("outputs", "base", "--env", env, "--json"),
                                "doit outputs"))
        cloud = json.loads(ok(repo.doit("cloud", "--env", env, "--json"), "doit cloud"))
        assert cloud["platform"] == "aws" and endpoint in cloud["where"]
        assert sorted(i["name"] for i in cloud["instances"]) == [
            f"{env}-base-1", f"{env}-base-2", f"{env}-base-3", f"{env}-nomad-1"]
        assert all(i["state"] == "running" and i["ready"] for i in cloud["instances"])

        before = members(repo, env, "base")
        assert [before[m]["ip"] for m in ("1", "2", "3")] == outputs["member_ips"]["value"]
        assert {m["image"] for m in before.values()} == {amis["etcd@1.0.0"]}
        nomad_before = members(repo, env, "nomad")

        with Ec2Poller(repo.ec2, env, "base") as poller:
            upgraded = repo.doit("upgrade", "base", "--env", env, "--to", "1.1.0", "--yes")
        ok(upgraded, "doit upgrade")
        assert not poller.errors, poller.errors
        after = members(repo, env, "base")
        assert rolling_problems(poller.history, before, after, amis["etcd@1.1.0"]) == []
        assert members(repo, env, "nomad") == nomad_before   # the dependent stood still
        assert "no changes" in ok(repo.doit("plan", "nomad", "--env", env), "plan after").lower()

        ok(repo.doit("destroy", "base", "--env", env, "--with-dependents", "--yes"),
           "doit destroy")
        assert [i for i in repo.instances(env)] == []
        ok(repo.doit("cloud", "--purge", env), "doit cloud --purge")   # the environment's subnet
        assert repo.leftovers(env) == []
    finally:
        problems = repo.close([env])
    assert not problems, problems


def test_aws_moto_upgrade_killed_then_resumed_instance_gates(tmp_path, moto, mirror):
    """``doit test-upgrade --platform moto`` killed with SIGKILL while Terraform replaces the
    second unit; ``doit upgrade --resume`` (the platform read back from the environment's state)
    completes it; ``doit destroy`` removes everything, the environment's subnet included."""
    endpoint, amis = moto
    env = f"t-aws{uuid.uuid4().hex[:6]}"
    repo = open_aws_repo(tmp_path, endpoint, mirror)
    try:
        log = tmp_path / "test-upgrade.log"
        with Ec2Poller(repo.ec2, env, "base") as poller:
            process = repo.popen("test-upgrade", "base", "--platform", "moto", "--env", env,
                                 "--from", "1.0.0", "--to", "1.1.0", log=log)
            before: dict[str, dict[str, str]] = {}
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and process.poll() is None:
                if not before and len(members(repo, env, "base")) == 3:
                    before = members(repo, env, "base")
                stopped = [i for i, states in poller.history.instances.items()
                           if any(s == "stopped" for _, s in states)]
                if len(stopped) == 2:
                    time.sleep(3)   # Terraform's targeted apply of the second unit is under way
                    break
                time.sleep(0.2)
            assert process.poll() is None, log.read_text()
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            assert before, "the three members were never seen running"
            resumed = repo.doit("upgrade", "base", "--env", env, "--resume", "--yes")
        ok(resumed, "doit upgrade --resume")
        assert "resuming" in resumed.stdout + resumed.stderr
        assert not poller.errors, poller.errors
        after = members(repo, env, "base")
        assert rolling_problems(poller.history, before, after, amis["etcd@1.1.0"]) == []

        ok(repo.doit("destroy", "base", "--env", env, "--yes"), "doit destroy")
        assert repo.leftovers(env) == []
        assert processes_under(repo.root) == []   # the killed run's Terraform finished
    finally:
        problems = repo.close([env])
    assert not problems, problems

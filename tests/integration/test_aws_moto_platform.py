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

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_moto import (
    REGION,
    Ec2Poller,
    aws_provider_mirror,
    dummy_credentials,
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
    """moto (scripts/moto-server: AWS's terminate behaviour for network interfaces), and the
    images' AMIs."""
    with dummy_credentials():
        amis = register_images(ec2_client(moto_endpoint), IMAGES)
        yield moto_endpoint, amis


def ok(result, what: str) -> str:
    assert result.returncode == 0, f"{what}: exit {result.returncode}\n{result.stdout}\n" \
                                   f"{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_aws_moto_base_and_nomad_created_upgraded_destroyed_instance_gates(
        tmp_path, moto, mirror, background):
    # (background: the kill scenario and test-create run beside this one)
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

        saved = tmp_path / f"{env}.plan"
        planned = json.loads(ok(repo.doit("plan", "nomad", "--env", env, "--json",
                                          "--out", str(saved)), "doit plan"))
        blocks = {b["block"]: b for b in planned["blocks"]}
        assert [(b, blocks[b]["target"], blocks[b]["deployed"]) for b in blocks] == [
            ("base", "1.0.0", None), ("nomad", "1.0.0", None)]
        assert {"address": "aws_instance.member[2]", "action": "create"} in \
            blocks["base"]["changes"]
        assert {"address": "aws_volume_attachment.node", "action": "create"} in \
            blocks["nomad"]["changes"]
        ok(repo.doit("apply", str(saved)), "doit apply")        # the reviewed plan, as saved
        assert "unchanged" in ok(repo.doit("create", "nomad", "--env", env), "doit create")
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
        shown = ok(repo.doit("cloud", "--env", env), "doit cloud (tables)")
        assert f"platform aws at aws {REGION}" in shown and f"{env}-base-3" in shown
        assert "etcd@1.0.0" in shown and f"{env}-base-1-data" in shown

        before = members(repo, env, "base")
        assert [before[m]["ip"] for m in ("1", "2", "3")] == outputs["member_ips"]["value"]
        assert {m["image"] for m in before.values()} == {amis["etcd@1.0.0"]}
        nomad_before = members(repo, env, "nomad")

        resolved = json.loads(ok(repo.doit("resolve", "nomad", "--env", env, "--json"),
                                 "doit resolve"))
        assert {b: s["version"] for b, s in resolved["selected"].items()} == {
            "base": "1.0.0", "nomad": "1.0.0"}
        assert f"pinned to 1.0.0 by environment {env}" in resolved["selected"]["base"]["reasons"]

        # the rolling plan on AWS: three units, each its instance, attachment and interface
        dry = json.loads(ok(repo.doit("upgrade", "base", "--env", env, "--to", "1.1.0",
                                      "--dry-run", "--json"), "doit upgrade --dry-run"))
        assert dry["mode"] == "dry-run" and dry["plan"]["rest"] == [], dry
        assert [(u["instance"], u["attachment"], u["interface"])
                for u in sorted(dry["plan"]["units"], key=lambda u: u["index"])] == [
            (f"aws_instance.member[{i}]", f"aws_volume_attachment.member[{i}]",
             f"aws_network_interface.member[{i}]") for i in range(3)]
        assert members(repo, env, "base") == before   # a dry run changes nothing

        with Ec2Poller(repo.ec2, env, "base") as poller:
            upgraded = repo.doit("upgrade", "base", "--env", env, "--to", "1.1.0", "--yes")
        print(ok(upgraded, "doit upgrade"), upgraded.stderr)
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


@dataclass
class KilledUpgrade:
    """What the kill scenario saw (filled by its thread, asserted by its test)."""

    env: str = ""
    before: dict[str, dict[str, str]] = field(default_factory=dict)
    after: dict[str, dict[str, str]] = field(default_factory=dict)
    history: Any = None
    poller_errors: list[str] = field(default_factory=list)
    killed: str = ""                      # how the run was when it was killed
    resumed: Any = None                   # CompletedProcess of `doit upgrade --resume`
    destroyed: Any = None                 # CompletedProcess of `doit destroy`
    leftovers: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # what close() had to clean up
    error: str | None = None


def _killed_upgrade(base: Path, endpoint: str, mirror: Path, seen: KilledUpgrade) -> None:
    """``doit test-upgrade --platform moto`` killed with SIGKILL while Terraform replaces the
    second unit; ``doit upgrade --resume`` (the platform read back from the environment's state);
    ``doit destroy`` (the environment's subnet goes with its last block)."""
    seen.env = env = f"t-aws{uuid.uuid4().hex[:6]}"
    repo = open_aws_repo(base, endpoint, mirror)
    try:
        log = base / "test-upgrade.log"
        with Ec2Poller(repo.ec2, env, "base") as poller:
            process = repo.popen("test-upgrade", "base", "--platform", "moto", "--env", env,
                                 "--from", "1.0.0", "--to", "1.1.0", log=log)
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and process.poll() is None:
                if not seen.before:
                    found = members(repo, env, "base")
                    if len(found) == 3 and all(m["volume"] for m in found.values()):
                        seen.before = found   # created: three members, each with its volume
                stopped = [i for i, states in poller.history.instances.items()
                           if any(s == "stopped" for _, s in states)]
                if len(stopped) == 2:
                    time.sleep(3)   # Terraform's targeted apply of the second unit is under way
                    break
                time.sleep(0.2)
            seen.killed = "running" if process.poll() is None else \
                f"had ended (exit {process.returncode}): {log.read_text()[-3000:]}"
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            seen.resumed = repo.doit("upgrade", "base", "--env", env, "--resume", "--yes")
        seen.history, seen.poller_errors = poller.history, poller.errors
        seen.after = members(repo, env, "base")
        seen.destroyed = repo.doit("destroy", "base", "--env", env, "--yes")
        seen.leftovers = repo.leftovers(env)
        seen.processes = processes_under(repo.root)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        seen.error = f"{type(exc).__name__}: {exc}"
    finally:
        seen.problems = repo.close([env])


@dataclass
class TestCreated:
    """What ``doit test-create nomad --platform moto`` did (filled by the background thread)."""

    __test__ = False   # not a pytest class

    env: str = ""
    result: Any = None                    # CompletedProcess
    report: dict[str, Any] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None


def _test_create(base: Path, endpoint: str, mirror: Path, seen: TestCreated) -> None:
    """``doit test-create nomad --platform moto``: base and nomad created in a throwaway
    environment, nomad's AWS block tests, everything destroyed."""
    seen.env = env = f"t-awc{uuid.uuid4().hex[:6]}"
    repo = open_aws_repo(base, endpoint, mirror)
    try:
        report = base / "report.json"
        seen.result = repo.doit("test-create", "nomad", "--platform", "moto", "--env", env,
                                "--report", str(report))
        if report.is_file():
            seen.report = json.loads(report.read_text())
        seen.leftovers = repo.leftovers(env)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        seen.error = f"{type(exc).__name__}: {exc}"
    finally:
        seen.problems = repo.close([env])


@dataclass
class Background:
    """Scenarios run one after the other in a thread beside the main test; each test waits
    for its own."""

    killed: KilledUpgrade = field(default_factory=KilledUpgrade)
    created: TestCreated = field(default_factory=TestCreated)
    done: dict[str, threading.Event] = field(default_factory=lambda: {
        "killed": threading.Event(), "created": threading.Event()})
    seconds: dict[str, float] = field(default_factory=dict)   # each scenario's wall time

    def wait(self, name: str) -> None:
        assert self.done[name].wait(timeout=1800), f"the {name} scenario took over 30 minutes"
        print(f"{name} scenario (in the background): {self.seconds.get(name, 0):.1f}s")


@pytest.fixture(scope="module")
def background(moto, mirror, tmp_path_factory):
    """The kill scenario, then ``test-create``, in a background thread started when the
    module's first test asks for them, beside that test (all of them wait mostly on the
    provider's fixed 10 s polls): the module takes about as long as its longest thread."""
    endpoint, amis = moto
    scenarios = Background()
    # made here, not in the thread: pytest's temporary folders are not made thread-safely
    folders = {name: tmp_path_factory.mktemp(name) for name in ("killed-upgrade", "test-create")}

    def run() -> None:
        started = time.monotonic()
        try:
            _killed_upgrade(folders["killed-upgrade"], endpoint, mirror, scenarios.killed)
        finally:
            scenarios.seconds["killed"] = time.monotonic() - started
            scenarios.done["killed"].set()
        started = time.monotonic()
        try:
            _test_create(folders["test-create"], endpoint, mirror, scenarios.created)
        finally:
            scenarios.seconds["created"] = time.monotonic() - started
            scenarios.done["created"].set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield scenarios, amis
    thread.join()   # never leave a scenario running past the module


def test_aws_moto_upgrade_killed_then_resumed_instance_gates(background):
    """See ``_killed_upgrade``."""
    scenarios, amis = background
    scenarios.wait("killed")
    seen = scenarios.killed
    assert seen.error is None, seen.error
    assert seen.killed == "running", seen.killed
    assert seen.before, "the three members were never seen running with their volumes"
    ok(seen.resumed, "doit upgrade --resume")
    assert "resuming" in seen.resumed.stdout + seen.resumed.stderr
    assert not seen.poller_errors, seen.poller_errors
    assert rolling_problems(seen.history, seen.before, seen.after, amis["etcd@1.1.0"]) == []
    ok(seen.destroyed, "doit destroy")
    assert seen.leftovers == []
    assert seen.processes == []   # the killed run's Terraform finished
    assert not seen.problems, seen.problems


def test_aws_moto_test_create_runs_the_aws_block_tests_instance_gates(background):
    """See ``_test_create``: nomad's AWS block tests ran against its dependency's outputs, the
    EC2-level ones passed and the service ones were skipped (moto runs no services)."""
    scenarios, _ = background
    scenarios.wait("created")
    seen = scenarios.created
    assert seen.error is None, seen.error
    output = ok(seen.result, "doit test-create")
    report = seen.report
    assert report["ok"] and report["environment"] == seen.env, report
    assert [(t["block"], t["version"], t["returncode"]) for t in report["tests"]] == [
        ("nomad", "1.0.0", 0)]
    summary = report["tests"][0]["summary"]
    assert "5 passed" in summary and "2 skipped" in summary, summary
    assert "EC2 emulator (endpoint override): its instances run no software" in output
    assert report["leftovers"] == {} and seen.leftovers == []
    assert not seen.problems, seen.problems


def test_aws_moto_plan_names_missing_amis_as_create_does(tmp_path, moto_endpoint, mirror):
    """No AMI for base's image (a region where none is registered): plan, create and the
    platform name the image, the AMI name and tag looked for and the packer build, before
    Terraform's own look-up would fail ("Your query returned no results"); nothing is made."""
    env = f"awsdev-{uuid.uuid4().hex[:6]}"
    repo = open_aws_repo(tmp_path, moto_endpoint, mirror, extra_toml=f"""
[platforms.bare]
kind = "aws"
region = "eu-west-2"
endpoint = "{moto_endpoint}"

[environments.{env}]
platform = "bare"
""")
    bare = ec2_client(moto_endpoint, region="eu-west-2")
    try:
        for args in (("plan", "base", "--env", env), ("create", "base", "--env", env)):
            result = repo.doit(*args)
            assert result.returncode == 1, (args, result.stdout + result.stderr)
            text = " ".join(result.stderr.split())
            assert "image etcd@1.1.0 has no AMI in" in text, (args, result.stderr)
            assert "none named infrablocks-etcd-1.1.0 with tag infrablocks:image=etcd@1.1.0" \
                in text, result.stderr
            assert "packer build -var region=eu-west-2 images/etcd/1.1.0/aws/" in text
            assert "Your query returned no results" not in result.stderr
            assert "Traceback" not in result.stderr
            # checked before anything is made: no subnet, no state, no record
            assert bare.describe_subnets(Filters=[
                {"Name": "tag:infrablocks:environment", "Values": [env]}])["Subnets"] == []
            with dummy_credentials():
                assert env not in repo.workspace().backend.list_environments()
    finally:
        with dummy_credentials():
            problems = repo.close([env])
    assert not problems, problems

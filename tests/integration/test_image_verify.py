"""Image release on a real (temporary) local cloud: build with packer, boot, the image's own
checks, then tag / keep / remove; an image whose checks fail is removed with a clear error;
`doit images` and pruning."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.errors import ConfigError
from infrablocks.images import parse_image_ref
from infrablocks.images.inventory import list_images, prune_images
from infrablocks.images.release import (
    KEPT,
    KEPT_EXISTING,
    KEPT_TAGGED,
    REMOVED,
    ImageVerificationError,
    release_image,
)
from infrablocks.registry import load_registry
from tests.support.subnets import hold_during_module

REPO_ROOT = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"
SUBNET = ipaddress.ip_network("127.42.251.0/24")
CLI_SUBNET = "127.42.252.0/24"

pytestmark = [pytest.mark.slow, pytest.mark.integration]
held_subnets = hold_during_module(str(SUBNET), CLI_SUBNET)


def assert_nothing_running(cloud: LocalCloud) -> None:
    assert cloud.describe_instances() == []
    assert cloud.describe_volumes() == []


def broken_repo(tmp_path: Path, checks: str) -> Path:
    """A monorepo holding etcd@1.1.0 with the given checks.toml."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "images" / "etcd" / "1.1.0", root / "images/etcd/1.1.0")
    (root / "images/etcd/1.1.0/checks.toml").write_text(checks)
    (root / "blocks.toml").write_text('[blocks.base]\n[blocks.base.versions."1.1.0"]\n'
                                      'images = ["etcd@1.1.0"]\n')
    (root / "dodo.py").write_text("from infrablocks.tasks import *  # noqa: F403\n")
    return root


ETCD_BOOT = """
[boot]
volume = "xvdf"
ready_timeout = 30
[boot.user_data]
data_device = "xvdf"
etcd_name = "verify"
etcd_initial_cluster = "verify=http://{ip}:2380"
device_wait_seconds = "10"
"""

WRONG_TUNING = ETCD_BOOT + """
[[checks]]
name = "etcd answers on its client port"
command = ["/usr/bin/etcdctl", "--endpoints=http://{ip}:2379", "endpoint", "health"]
output_contains = "is healthy"

[[checks]]
name = "heartbeat is 999 ms"
command = ["/usr/bin/grep", "-q", "--", "--heartbeat-interval=999", "{instance_dir}/console.log"]
timeout = 2
"""


def test_tagged_image_is_verified_and_kept(local_cloud: LocalCloud, tmp_path: Path) -> None:
    release = release_image(REPO_ROOT, parse_image_ref("etcd@1.1.0"), local_cloud,
                            tag="stable", subnet=SUBNET, log_dir=tmp_path)
    assert release.outcome == KEPT_TAGGED and release.new
    checks = {c.name: c for c in release.verification.checks}
    assert all(c.ok for c in checks.values())
    assert "a single-member cluster formed" in checks
    assert "the data volume is formatted and mounted" in checks
    assert release.verification.private_ip in {str(ip) for ip in SUBNET.hosts()}
    assert local_cloud.find_image("etcd", tag="stable").id == release.image.id
    assert_nothing_running(local_cloud)
    # the same version again: same content, already registered, kept even untagged
    again = release_image(REPO_ROOT, parse_image_ref("etcd@1.1.0"), local_cloud,
                          subnet=SUBNET, log_dir=tmp_path)
    assert again.outcome == KEPT_EXISTING and not again.new
    assert again.image.id == release.image.id


def test_untagged_image_is_removed_after_verification(local_cloud: LocalCloud,
                                                      tmp_path: Path) -> None:
    release = release_image(REPO_ROOT, parse_image_ref("microservice02@1.0.0"), local_cloud,
                            subnet=SUBNET, log_dir=tmp_path)
    assert release.outcome == REMOVED
    assert [c.name for c in release.verification.checks] == [
        "the health endpoint answers", "the echo endpoint echoes"]
    assert local_cloud.list_images() == []
    kept = release_image(REPO_ROOT, parse_image_ref("microservice02@1.0.0"), local_cloud,
                         keep=True, subnet=SUBNET, log_dir=tmp_path)
    assert kept.outcome == KEPT
    assert [i.ref for i in local_cloud.list_images()] == ["microservice02@1.0.0"]


def test_companions_boot_first_and_go_away(local_cloud: LocalCloud, tmp_path: Path) -> None:
    release = release_image(REPO_ROOT, parse_image_ref("nomad@1.0.0"), local_cloud,
                            tag="candidate", subnet=SUBNET, log_dir=tmp_path)
    assert release.verification.ok
    assert "the node registered itself in etcd" in [c.name for c in release.verification.checks]
    # the etcd companion's image was built for the verification only
    assert [i.ref for i in local_cloud.list_images()] == ["nomad@1.0.0"]
    assert_nothing_running(local_cloud)


def test_image_failing_its_checks_is_removed(local_cloud: LocalCloud, tmp_path: Path) -> None:
    repo = broken_repo(tmp_path, WRONG_TUNING)
    with pytest.raises(ImageVerificationError) as failure:
        release_image(repo, parse_image_ref("etcd@1.1.0"), local_cloud, tag="stable",
                      subnet=SUBNET, log_dir=tmp_path)
    message = str(failure.value)
    assert "image etcd@1.1.0 failed verification (the image was removed)" in message
    assert "check failed: heartbeat is 999 ms" in message
    assert "etcd answers" not in message                      # that one passed
    assert "console (last lines)" in message and "images/etcd/1.1.0/checks.toml" in message
    assert [c.ok for c in failure.value.verification.checks] == [True, False]
    assert local_cloud.list_images() == []
    assert_nothing_running(local_cloud)


def test_image_that_never_gets_ready_is_removed(local_cloud: LocalCloud,
                                                tmp_path: Path) -> None:
    no_name = ETCD_BOOT.replace('etcd_name = "verify"\n', "") + """
[[checks]]
name = "etcd answers"
command = ["/usr/bin/etcdctl", "--endpoints=http://{ip}:2379", "endpoint", "health"]
"""
    repo = broken_repo(tmp_path, no_name)
    with pytest.raises(ImageVerificationError, match="boot failed: instance i-.* never got ready"):
        release_image(repo, parse_image_ref("etcd@1.1.0"), local_cloud, subnet=SUBNET,
                      log_dir=tmp_path)
    assert local_cloud.list_images() == []
    assert_nothing_running(local_cloud)


def test_bad_checks_file_fails_before_the_build(local_cloud: LocalCloud,
                                                tmp_path: Path) -> None:
    repo = broken_repo(tmp_path, ETCD_BOOT + '[[checks]]\nname = "x"\nhttp = "http://{nope}/"\n')
    with pytest.raises(ConfigError) as failure:
        release_image(repo, parse_image_ref("etcd@1.1.0"), local_cloud, subnet=SUBNET,
                      log_dir=tmp_path)
    assert "images/etcd/1.1.0/checks.toml: checks[0].http: unknown placeholder {nope}" in \
        str(failure.value)
    assert not list(tmp_path.glob("*.log"))                  # packer never ran


def scratch_artifact(tmp_path: Path, name: str) -> Path:
    artifact = tmp_path / name
    artifact.mkdir()
    (artifact / "entrypoint").write_text(f"#!/bin/sh\n# {name}\nexec sleep 600\n")
    (artifact / "entrypoint").chmod(0o755)
    return artifact


def test_listing_and_prune(local_cloud: LocalCloud, tmp_path: Path) -> None:
    registry = load_registry(REPO_ROOT)
    used = local_cloud.register_image("etcd", "1.0.0", scratch_artifact(tmp_path, "etcd"))
    unused = local_cloud.register_image("scratch", "1.0.0", scratch_artifact(tmp_path, "a"))
    tagged = local_cloud.register_image("scratch", "2.0.0", scratch_artifact(tmp_path, "b"),
                                        tags=["stable"])
    running = local_cloud.register_image("scratch", "3.0.0", scratch_artifact(tmp_path, "c"))
    instance = local_cloud.run_instance(name="user", image_id=running.id,
                                        private_ip="127.42.251.200")
    rows = {row.ref: row for row in list_images(REPO_ROOT, local_cloud, registry)}
    assert rows["etcd@1.0.0"].used_by == ("base@1.0.0",) and rows["etcd@1.0.0"].id == used.id
    assert rows["etcd@1.1.0"].id is None and rows["etcd@1.1.0"].used_by == ("base@1.1.0",)
    assert rows["scratch@2.0.0"].tags == ("stable",) and not rows["scratch@2.0.0"].template
    assert rows["scratch@3.0.0"].instances == (instance.id,)
    assert rows["scratch@1.0.0"].size_bytes and rows["scratch@1.0.0"].built

    dry = prune_images(REPO_ROOT, local_cloud, registry, dry_run=True)
    assert [r.ref for r in dry.removed] == ["scratch@1.0.0"]
    assert len(local_cloud.list_images()) == 4
    result = prune_images(REPO_ROOT, local_cloud, registry)
    assert [r.id for r in result.removed] == [unused.id]
    assert [(r.ref, why) for r, why in result.kept_in_use] == [
        ("scratch@3.0.0", f"used by instance {instance.id}")]
    assert {i.id for i in local_cloud.list_images()} == {used.id, tagged.id, running.id}


def cli_env(cloud: LocalCloud) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRABLOCKS_")}
    env.update(LOCALCLOUD_ROOT=str(cloud.root), INFRABLOCKS_VERIFY_SUBNET=CLI_SUBNET,
               NO_COLOR="1", COLUMNS="200")
    return env


def test_doit_image_and_doit_images(local_cloud: LocalCloud, tmp_path: Path) -> None:
    env = cli_env(local_cloud)

    def doit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DOIT), *args], cwd=cwd, env=env, text=True,
                              capture_output=True, check=False, timeout=300)

    built = doit(REPO_ROOT, "image", "microservice02@1.0.0", "--tag", "stable")
    assert built.returncode == 0, built.stderr
    assert "microservice02@1.0.0 registered, verified (2 checks passed" in built.stdout
    assert "kept (tagged)" in built.stdout
    listing = json.loads(doit(REPO_ROOT, "images", "--json").stdout)
    row = next(r for r in listing if r["ref"] == "microservice02@1.0.0")
    assert row["tags"] == ["stable"] and row["used_by"] == ["microservice02@1.0.0"]
    pruned = doit(REPO_ROOT, "images", "--prune")
    assert pruned.returncode == 0 and "nothing to prune" in pruned.stdout

    failing = doit(broken_repo(tmp_path, WRONG_TUNING), "image", "etcd@1.1.0")
    assert failing.returncode == 1
    assert "Traceback" not in failing.stderr
    assert "failed verification (the image was removed)" in failing.stderr
    assert "check failed: heartbeat is 999 ms" in failing.stderr
    assert [i.ref for i in local_cloud.list_images()] == ["microservice02@1.0.0"]

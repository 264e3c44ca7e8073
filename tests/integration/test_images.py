"""Image builds with Debian's packer, registration and lookup in the local cloud, and the etcd
image booting for real on local-cloud instances (no Terraform here: the control plane only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.errors import ImageConflictError, NotFoundError
from infrablocks.errors import UsageError
from infrablocks.images import (
    PackerError,
    build_artifact,
    build_image,
    lookup_image,
    parse_image_ref,
    verify_image,
)
from tests.support.subnets import hold_during_module

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBNET = "127.42.211"          # this module's addresses: 127.42.211.0/24
ETCDCTL = "/usr/bin/etcdctl"

pytestmark = [pytest.mark.slow, pytest.mark.integration]
held_subnets = hold_during_module(f"{SUBNET}.0/24", "127.42.253.0/24")


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=5s", *args],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "ETCDCTL_API": "3"})


def fake_repo(tmp_path: Path, image: str = "etcd", version: str = "1.0.0") -> Path:
    """A repository holding a copy of one image version, to break or change it."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "images" / image / version, repo / "images" / image / version)
    return repo


# --------------------------------------------------------------------------- build + register

def test_build_registers_a_content_addressed_image(local_cloud, tmp_path):
    image = build_image(REPO_ROOT, "etcd", "1.0.0", local_cloud, log_dir=tmp_path)
    assert image.id.startswith("img-") and image.digest.startswith("sha256:")
    assert (image.name, image.version) == ("etcd", "1.0.0")
    artifact = Path(image.path)
    assert os.access(artifact / "entrypoint", os.X_OK)
    assert json.loads((artifact / "release.json").read_text())["version"] == "1.0.0"
    assert image.metadata["builder"] == "null" and image.metadata["source"] == "images/etcd/1.0.0"
    assert lookup_image(local_cloud, parse_image_ref("etcd@1.0.0")).id == image.id
    assert (tmp_path / "etcd@1.0.0.log").read_text().count("Builds finished") == 1

    again = build_image(REPO_ROOT, "etcd", "1.0.0", local_cloud, log_dir=tmp_path)
    assert again.id == image.id and again.digest == image.digest
    assert [i.id for i in local_cloud.list_images()] == [image.id]


def test_versions_differ_by_their_etcd_settings(local_cloud, image_builder):
    old, new = image_builder("etcd@1.0.0"), image_builder("etcd@1.1.0")
    assert old.id != new.id
    settings = [json.loads((Path(i.path) / "etcd-settings.json").read_text()) for i in (old, new)]
    assert settings[0]["heartbeat_interval_ms"] != settings[1]["heartbeat_interval_ms"]
    assert settings[0]["election_timeout_ms"] != settings[1]["election_timeout_ms"]
    assert local_cloud.find_image("etcd").id == new.id   # newest version


def test_lookup_of_an_unbuilt_version_says_how_to_build_it(local_cloud, image_builder):
    image_builder("etcd@1.0.0")
    with pytest.raises(NotFoundError) as caught:
        lookup_image(local_cloud, parse_image_ref("etcd@1.1.0"))
    assert "1.0.0" in str(caught.value) and "doit image etcd@1.1.0" in str(caught.value)


def test_changed_content_under_a_registered_version_is_refused(local_cloud, tmp_path):
    repo = fake_repo(tmp_path)
    build_image(repo, "etcd", "1.0.0", local_cloud, log_dir=tmp_path)
    settings = repo / "images/etcd/1.0.0/files/etcd-settings.json"
    settings.write_text(settings.read_text().replace("100", "120"))
    with pytest.raises(ImageConflictError) as caught:
        build_image(repo, "etcd", "1.0.0", local_cloud, log_dir=tmp_path)
    assert "immutable" in str(caught.value)
    assert len(local_cloud.list_images()) == 1


def test_verify_finds_a_modified_artifact_and_a_changed_source(local_cloud, tmp_path):
    repo = fake_repo(tmp_path)
    ref = parse_image_ref("etcd@1.0.0")
    assert verify_image(repo, ref, local_cloud).problems() == [
        "etcd@1.0.0 is not registered (build it with `doit image etcd@1.0.0 --keep`)"]
    image = build_image(repo, "etcd", "1.0.0", local_cloud, log_dir=tmp_path)
    result = verify_image(repo, ref, local_cloud, log_dir=tmp_path)
    assert result.ok and result.problems() == []

    settings = repo / "images/etcd/1.0.0/files/etcd-settings.json"
    settings.write_text(settings.read_text().replace("100", "90"))
    result = verify_image(repo, ref, local_cloud, log_dir=tmp_path)
    assert result.intact and not result.matches_source
    assert "changed since it was registered" in result.problems()[0]

    with (Path(image.path) / "release.json").open("a") as handle:
        handle.write("tampered\n")
    assert not verify_image(repo, ref, local_cloud, log_dir=tmp_path).intact


def test_missing_template_lists_the_available_versions(local_cloud):
    with pytest.raises(UsageError) as caught:
        build_image(REPO_ROOT, "etcd", "9.9.9", local_cloud)
    message = str(caught.value)
    assert "images/etcd/9.9.9" in message and "1.0.0, 1.1.0" in message
    with pytest.raises(UsageError, match="available images: .*etcd@1.0.0"):
        build_image(REPO_ROOT, "no-such-image", "1.0.0", local_cloud)
    with pytest.raises(UsageError, match="NAME@VERSION"):
        parse_image_ref("etcd-1.0.0")
    assert local_cloud.list_images() == []


def test_packer_failure_shows_its_error_lines_and_the_log(local_cloud, tmp_path):
    repo = fake_repo(tmp_path)
    script = repo / "images/etcd/1.0.0/scripts/provision.sh"
    script.write_text("#!/usr/bin/env bash\necho 'provision: cannot fetch etcd' >&2\nexit 7\n")
    with pytest.raises(PackerError) as caught:
        build_image(repo, "etcd", "1.0.0", local_cloud, log_dir=tmp_path / "logs")
    message = str(caught.value)
    assert "image etcd@1.0.0: packer build failed" in message
    assert "exit status: 7" in message and "provision: cannot fetch etcd" in message
    assert str(tmp_path / "logs" / "etcd@1.0.0.log") in message
    assert "cannot fetch etcd" in (tmp_path / "logs" / "etcd@1.0.0.log").read_text()
    assert local_cloud.list_images() == []


def test_a_template_that_makes_no_entrypoint_is_refused(tmp_path):
    repo = fake_repo(tmp_path)
    script = repo / "images/etcd/1.0.0/scripts/provision.sh"
    script.write_text('#!/usr/bin/env bash\nmkdir -p "$IMAGE_ROOT"\n')
    with pytest.raises(Exception, match="has no `entrypoint`"):
        build_artifact(repo, parse_image_ref("etcd@1.0.0"), tmp_path / "out",
                       log_dir=tmp_path / "logs")
    assert not (tmp_path / "out").exists()


def test_doit_image_command(tmp_path):
    # A copy of the monorepo's entry points, so that the command's logs and doit's database
    # land in the test's directory, not in the real repository's .infrablocks/.
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "images" / "etcd", repo / "images" / "etcd")
    for name in ("dodo.py", "blocks.toml"):
        shutil.copy(REPO_ROOT / name, repo / name)
    env = {k: v for k, v in os.environ.items() if k != "INFRABLOCKS_REPO"}
    env["LOCALCLOUD_ROOT"] = str(tmp_path / "cloud")
    env["INFRABLOCKS_VERIFY_SUBNET"] = "127.42.253.0/24"   # doit image boots the image
    doit = [sys.executable, "-m", "doit"]
    run = subprocess.run([*doit, "image", "etcd@1.0.0", "--tag", "candidate"], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "etcd@1.0.0 registered" in run.stdout
    for field in ("id          img-", "digest      sha256:", "build time", "candidate"):
        assert field in run.stdout
    bad = subprocess.run([*doit, "image", "etcd@7.0.0"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2
    assert "available versions of etcd: 1.0.0, 1.1.0" in bad.stderr
    assert (repo / ".infrablocks/logs/images/etcd@1.0.0.log").is_file()
    assert "Traceback" not in bad.stderr

    again = subprocess.run([*doit, "image", "etcd@1.0.0"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert "unchanged (same content, same id)" in again.stdout, again.stderr
    removed = subprocess.run([*doit, "image", "etcd@1.0.0", "--remove"], cwd=repo,
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert removed.returncode == 0 and "etcd@1.0.0 removed" in removed.stdout, removed.stderr
    assert LocalCloud(tmp_path / "cloud").list_images() == []


# --------------------------------------------------------------------------- the image boots

def start_member(cloud, image, index: int, cluster: str, *, attach_volume=None):
    name = f"img-test-{index}"
    instance = cloud.run_instance(
        name=name, image_id=image.id, private_ip=f"{SUBNET}.{10 + index}",
        user_data={"data_device": "xvdf", "etcd_name": name, "etcd_initial_cluster": cluster,
                   "etcd_initial_cluster_token": "img-test"},
        tags={"environment": "t-images", "member": str(index)})
    if attach_volume is not None:
        cloud.attach_volume(attach_volume.id, instance.id, "xvdf")
    return instance


def test_etcd_image_forms_a_cluster_and_a_member_comes_back_with_its_data(local_cloud,
                                                                        image_builder):
    old, new = image_builder("etcd@1.0.0"), image_builder("etcd@1.1.0")
    cluster = ",".join(f"img-test-{i}=http://{SUBNET}.{10 + i}:2380" for i in (1, 2, 3))
    volumes = [local_cloud.create_volume(name=f"img-test-{i}", size_gb=1) for i in (1, 2, 3)]
    # As on EC2, the instances start before their volumes are attached: the entrypoint waits.
    members = [start_member(local_cloud, old, i, cluster) for i in (1, 2, 3)]
    time.sleep(0.5)
    assert not any(local_cloud.get_instance(m.id).ready for m in members)
    assert "waiting for device xvdf" in local_cloud.console_output(members[0].id)
    for member, volume in zip(members, volumes, strict=True):
        local_cloud.attach_volume(volume.id, member.id, "xvdf")
    for member in members:
        local_cloud.wait_until_ready(member.id, timeout=60)

    data = Path(volumes[0].path)
    filesystem_id = (data / ".formatted").read_text().strip()
    assert filesystem_id.startswith("fs-")
    assert (data / ".mounted").read_text().strip() == members[0].id
    assert (data / "etcd" / "member").is_dir()
    endpoint = f"http://{SUBNET}.11:2379"
    health = etcdctl(endpoint, "endpoint", "health", "--cluster")
    assert health.returncode == 0, health.stderr
    assert etcdctl(endpoint, "put", "/images/kept", "yes").returncode == 0

    # Replace member 1 by an instance of the 1.1.0 image on the same volume.
    local_cloud.stop_instance(members[0].id, grace=15)
    assert not (data / ".mounted").exists()        # "unmounted" on a clean stop
    local_cloud.detach_volume(volumes[0].id, members[0].id)
    local_cloud.terminate_instance(members[0].id)
    replacement = start_member(local_cloud, new, 1, cluster, attach_volume=volumes[0])
    local_cloud.wait_until_ready(replacement.id, timeout=60)

    console = local_cloud.console_output(replacement.id, lines=400)
    assert "rejoining with its data" in console and "--initial-cluster-state=existing" in console
    assert "--heartbeat-interval=150" in console and "--election-timeout=1500" in console
    assert (data / ".formatted").read_text().strip() == filesystem_id   # not formatted again
    assert (data / ".mounted").read_text().strip() == replacement.id
    got = etcdctl(endpoint, "get", "/images/kept", "--print-value-only")
    assert got.stdout.strip() == "yes", got.stderr
    assert etcdctl(endpoint, "endpoint", "health", "--cluster").returncode == 0


def test_entrypoint_stops_cleanly_on_sigterm_while_waiting_for_its_device(local_cloud,
                                                                         image_builder):
    image = image_builder("etcd@1.0.0")
    member = start_member(local_cloud, image, 5, f"img-test-5=http://{SUBNET}.15:2380")
    time.sleep(0.5)
    stopped = local_cloud.stop_instance(member.id, grace=5)
    assert stopped.state == "stopped"
    assert "stopped before etcd started" in local_cloud.console_output(member.id)

"""The localcloud provider under real Terraform (.venv/bin/terraform, provider from the mirror).

Every test gets its own cloud (``local_cloud`` from conftest: its finalizer terminates every
instance, deletes every volume and checks that no process is left) and registers a small image
whose entrypoint behaves as the contract says: waits for its device, "formats" and "mounts" the
volume, serves the volume over HTTP on its private IP and writes its readiness marker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.records import Image
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from tests.support.subnets import hold_during_module

pytestmark = [pytest.mark.slow, pytest.mark.integration]
held_subnets = hold_during_module("127.42.203.0/24")   # this module's instances

TERRAFORM = Path(sys.executable).parent / "terraform"
PORT = 8080

ENTRYPOINT = r'''#!/usr/bin/env python3
import http.server, json, os, sys, time
env = os.environ
device = json.load(open(env["LOCALCLOUD_USER_DATA"]))["data_device"]
data = os.path.join(env["LOCALCLOUD_DEVICES_DIR"], device)
deadline = time.monotonic() + 30
while not os.path.isdir(data):
    if time.monotonic() > deadline:
        sys.exit(f"device {device} never appeared")
    time.sleep(0.05)
if not os.path.exists(os.path.join(data, ".formatted")):
    open(os.path.join(data, ".formatted"), "w").write("fs-" + env["LOCALCLOUD_INSTANCE_ID"])
open(os.path.join(data, ".mounted"), "w").write(env["LOCALCLOUD_INSTANCE_ID"])
with open(os.path.join(data, "boots"), "a") as boots:
    boots.write(env["LOCALCLOUD_INSTANCE_ID"] + " " + VERSION + "\n")
handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=data, **k)
server = http.server.HTTPServer((env["LOCALCLOUD_PRIVATE_IP"], 8080), handler)
open(os.path.join(env["LOCALCLOUD_INSTANCE_DIR"], "ready"), "w").close()
print("serving", flush=True)
server.serve_forever()
'''

MAIN_TF = """
terraform {
  required_providers {
    localcloud = { source = "infrablocks.local/infrablocks/localcloud", version = "~> 0.1" }
  }
}
provider "localcloud" {}

variable "image_version" { default = "1.0.0" }
variable "environment"   { default = "t-prov" }
variable "name"          { default = "web" }
variable "ip"            { default = "127.42.203.10" }
variable "stop_before_detaching" { default = true }

data "localcloud_image" "web" {
  name    = "webtest"
  version = var.image_version
}

resource "localcloud_volume" "data" {
  name    = "${var.name}-data"
  size_gb = 1
  tags    = { environment = var.environment }
}

resource "localcloud_instance" "web" {
  name       = var.name
  image_id   = data.localcloud_image.web.id
  private_ip = var.ip
  user_data  = { data_device = "xvdf" }
  tags       = { environment = var.environment }
}

resource "localcloud_volume_attachment" "data" {
  volume_id   = localcloud_volume.data.id
  instance_id = localcloud_instance.web.id
  device_name = "xvdf"
  stop_instance_before_detaching = var.stop_before_detaching
}

output "instance_id" { value = localcloud_instance.web.id }
output "volume_id"   { value = localcloud_volume.data.id }
output "pid"         { value = localcloud_instance.web.pid }
"""


class Terraform:
    """Real Terraform in one working directory, with the provider's CLI config."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(TERRAFORM), *args, "-no-color"], cwd=self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"terraform {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def apply(self, **variables: object) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-auto-approve", "-input=false", *_vars(variables))

    def outputs(self) -> dict[str, object]:
        raw = json.loads(self.run("output", "-json").stdout)
        return {name: value["value"] for name, value in raw.items()}


def _vars(variables: Mapping[str, object]) -> list[str]:
    return [f"-var={k}={json.dumps(v) if isinstance(v, bool) else v}"
            for k, v in variables.items()]


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    return write_cli_config(CliConfigPaths.under(tmp_path / "terraform"))


def make_image(cloud: LocalCloud, tmp_path: Path, version: str) -> Image:
    artifact = tmp_path / f"artifact-{version}"
    artifact.mkdir()
    (artifact / "entrypoint").write_text(ENTRYPOINT.replace("VERSION", repr(version)))
    (artifact / "entrypoint").chmod(0o755)
    return cloud.register_image("webtest", version, artifact)


@pytest.fixture
def images(local_cloud: LocalCloud, tmp_path: Path) -> dict[str, Image]:
    return {v: make_image(local_cloud, tmp_path, v) for v in ("1.0.0", "2.0.0")}


def new_workdir(tmp_path: Path, name: str, cloud: LocalCloud, cli_config: Path) -> Terraform:
    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / "main.tf").write_text(MAIN_TF)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_CLI_CONFIG_FILE=str(cli_config), CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1",
               LOCALCLOUD_ROOT=str(cloud.root))
    terraform = Terraform(workdir, env)
    terraform.run("init", "-input=false")
    return terraform


def fetch(ip: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:{PORT}/{path}", timeout=5) as response:
        return response.read().decode()


def test_create_update_replace_destroy(local_cloud: LocalCloud, images: dict[str, Image],
                                       tmp_path: Path, cli_config: Path) -> None:
    tf = new_workdir(tmp_path, "w", local_cloud, cli_config)
    tf.apply()
    first = tf.outputs()
    instance = local_cloud.wait_until_ready(str(first["instance_id"]), timeout=30)
    assert instance.image_id == images["1.0.0"].id and instance.private_ip == "127.42.203.10"
    assert instance.pid == first["pid"] and instance.tags == {"environment": "t-prov"}
    volume = local_cloud.get_volume(str(first["volume_id"]))
    assert volume.state == "in-use" and volume.attachment.instance_id == instance.id
    assert fetch("127.42.203.10", ".mounted") == instance.id
    (Path(volume.path) / "payload.txt").write_text("kept across replacement")
    assert tf.run("plan", "-detailed-exitcode", "-input=false").returncode == 0

    # tags change in place (instance and volume): same instance, same process
    updated = tf.apply(environment="t-prov2")
    assert "0 added, 2 changed, 0 destroyed" in updated.stdout
    assert tf.outputs()["instance_id"] == instance.id
    assert local_cloud.get_volume(volume.id).tags == {"environment": "t-prov2"}
    assert local_cloud.get_instance(instance.id).tags == {"environment": "t-prov2"}
    assert local_cloud.get_instance(instance.id).pid == instance.pid

    # a new image forces a new instance; the volume and its data stay (its tags change in
    # place in the same apply, while its attachment is replaced)
    plan = tf.run("plan", "-input=false", "-var=image_version=2.0.0", "-var=environment=t-prov3")
    assert "forces replacement" in plan.stdout
    replaced = tf.apply(image_version="2.0.0", environment="t-prov3")
    assert "2 added, 1 changed, 2 destroyed" in replaced.stdout
    second = tf.outputs()
    assert second["instance_id"] != instance.id and second["volume_id"] == volume.id
    new_instance = local_cloud.wait_until_ready(str(second["instance_id"]), timeout=30)
    assert new_instance.image_id == images["2.0.0"].id
    assert [i.id for i in local_cloud.describe_instances()] == [new_instance.id]
    assert fetch("127.42.203.10", "payload.txt") == "kept across replacement"
    assert fetch("127.42.203.10", ".formatted") == f"fs-{instance.id}"  # not formatted again
    assert fetch("127.42.203.10", "boots").splitlines() == [
        f"{instance.id} 1.0.0", f"{new_instance.id} 2.0.0"]

    assert tf.run("plan", "-detailed-exitcode", "-input=false", "-var=image_version=2.0.0",
                  "-var=environment=t-prov3").returncode == 0
    destroyed = tf.run("destroy", "-auto-approve", "-input=false",
                       "-var=image_version=2.0.0", "-var=environment=t-prov3")
    assert "3 destroyed" in destroyed.stdout
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []
    assert not Path(new_instance.path).exists()


def test_detaching_from_a_running_instance_is_refused(local_cloud: LocalCloud,
                                                      images: dict[str, Image],
                                                      tmp_path: Path, cli_config: Path) -> None:
    tf = new_workdir(tmp_path, "w", local_cloud, cli_config)
    tf.apply(stop_before_detaching=False, ip="127.42.203.20")
    outputs = tf.outputs()
    refused = tf.run("destroy", "-auto-approve", "-input=false",
                     "-var=stop_before_detaching=false", "-var=ip=127.42.203.20", check=False)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert (f"volume {outputs['volume_id']} (web-data) is in use by running instance "
            f"{outputs['instance_id']} (web); stop the instance first") in message
    instance = local_cloud.get_instance(str(outputs["instance_id"]))
    assert instance.state == "running" and instance.devices == {"xvdf": outputs["volume_id"]}

    # the rolling-upgrade pre-operation: stop first, then the detach goes through
    local_cloud.stop_instance(instance.id, grace=5)
    tf.run("destroy", "-auto-approve", "-input=false", "-var=stop_before_detaching=false",
           "-var=ip=127.42.203.20")
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []


def test_a_killed_instance_is_drift_and_plan_recreates_it(local_cloud: LocalCloud,
                                                          images: dict[str, Image],
                                                          tmp_path: Path,
                                                          cli_config: Path) -> None:
    tf = new_workdir(tmp_path, "w", local_cloud, cli_config)
    tf.apply(ip="127.42.203.30")
    before = tf.outputs()
    instance = local_cloud.wait_until_ready(str(before["instance_id"]), timeout=30)
    os.kill(instance.pid, signal.SIGKILL)
    local_cloud.wait_for_state(instance.id, "stopped", timeout=10)

    plan = tf.run("plan", "-detailed-exitcode", "-input=false", "-var=ip=127.42.203.30",
                  check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "localcloud_instance.web has been deleted" in plan.stdout
    assert "localcloud_instance.web will be created" in plan.stdout
    assert "Plan: 2 to add, 0 to change, 0 to destroy" in plan.stdout

    tf.apply(ip="127.42.203.30")
    after = tf.outputs()
    assert after["volume_id"] == before["volume_id"] and after["instance_id"] != instance.id
    local_cloud.wait_until_ready(str(after["instance_id"]), timeout=30)
    assert fetch("127.42.203.30", ".mounted") == after["instance_id"]
    assert tf.run("plan", "-detailed-exitcode", "-input=false",
                  "-var=ip=127.42.203.30").returncode == 0


def test_two_applies_against_one_cloud_at_once(local_cloud: LocalCloud, images: dict[str, Image],
                                               tmp_path: Path, cli_config: Path) -> None:
    runs = [new_workdir(tmp_path, f"w{n}", local_cloud, cli_config) for n in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(
            lambda n: runs[n].apply(name=f"web{n}", ip=f"127.42.203.{40 + n}",
                                    environment=f"t-par{n}"), range(2)))
    assert all("3 added" in r.stdout for r in results)
    instances = local_cloud.describe_instances()
    assert sorted(i.name for i in instances) == ["web0", "web1"]
    for n in range(2):
        outputs = runs[n].outputs()
        local_cloud.wait_until_ready(str(outputs["instance_id"]), timeout=30)
        assert fetch(f"127.42.203.{40 + n}", ".mounted") == outputs["instance_id"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda n: runs[n].run(
            "destroy", "-auto-approve", "-input=false", f"-var=name=web{n}",
            f"-var=ip=127.42.203.{40 + n}"), range(2)))
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []


def test_unknown_image_version_fails_naming_what_exists(local_cloud: LocalCloud,
                                                        images: dict[str, Image],
                                                        tmp_path: Path,
                                                        cli_config: Path) -> None:
    tf = new_workdir(tmp_path, "w", local_cloud, cli_config)
    failed = tf.run("plan", "-input=false", "-var=image_version=9.9.9", check=False)
    assert failed.returncode == 1
    message = " ".join(failed.stderr.split())
    assert "no image webtest@9.9.9 is registered; webtest has: 1.0.0, 2.0.0" in message


def test_provider_needs_a_root(local_cloud: LocalCloud, images: dict[str, Image],
                               tmp_path: Path, cli_config: Path) -> None:
    tf = new_workdir(tmp_path, "w", local_cloud, cli_config)
    del tf.env["LOCALCLOUD_ROOT"]
    failed = tf.run("plan", "-input=false", check=False)
    assert failed.returncode == 1
    assert "the local cloud's directory is not set" in failed.stderr
    assert "LOCALCLOUD_ROOT" in failed.stderr
    time.sleep(0)  # nothing was started
    assert local_cloud.describe_instances() == []


def test_an_entrypoint_that_exits_at_once_fails_the_apply(local_cloud: LocalCloud,
                                                          tmp_path: Path,
                                                          cli_config: Path) -> None:
    artifact = tmp_path / "artifact-broken"
    artifact.mkdir()
    (artifact / "entrypoint").write_text("#!/bin/sh\necho 'boom: no config'\nexit 3\n")
    (artifact / "entrypoint").chmod(0o755)
    local_cloud.register_image("webtest", "1.0.0", artifact)
    tf = new_workdir(tmp_path, "w", local_cloud, cli_config)
    failed = tf.run("apply", "-auto-approve", "-input=false", "-var=ip=127.42.203.50",
                    check=False)
    assert failed.returncode == 1
    assert "its entrypoint exited right after start" in failed.stderr
    assert "boom: no config" in failed.stderr
    assert local_cloud.describe_instances() == []

"""The nomad block for real: on base's etcd (the base block), Terraform creates the scheduler
node (supervisord) with its volume; its block tests pass (XML-RPC answers, node registered in
etcd); a job submitted through the scheduler runs on the node; destroy deregisters the node and
leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from infrablocks.cloud.local.jobs import Scheduler, job_spec
from infrablocks.cloud.local.process import is_alive, read_stat

ENVIRONMENT = "t-nomad"
SUBNET = "127.42.222.0/24"
NODE_IP = "127.42.222.31"
ETCDCTL = "/usr/bin/etcdctl"
TERRAFORM = Path(sys.executable).parent / "terraform"


def etcd_keys(endpoints: list[str], prefix: str) -> list[str]:
    result = subprocess.run(
        [ETCDCTL, f"--endpoints={','.join(endpoints)}", "--command-timeout=5s",
         "get", "--prefix", "--keys-only", prefix],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "ETCDCTL_API": "3"})
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.integration
def test_nomad_node_create_run_a_job_destroy(deploy_block, local_cloud):
    base = deploy_block("base", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET)
    base_outputs = {"endpoints": base["endpoints"], "cluster_name": base["cluster_name"]}
    nomad = deploy_block("nomad", "1.0.0", inputs={"base": base_outputs},
                         environment=ENVIRONMENT, subnet_cidr=SUBNET)

    assert nomad["node_ip"] == NODE_IP
    assert nomad["api_url"] == f"http://{NODE_IP}:9001"
    [node] = nomad.instances()
    assert node.tags == {"environment": ENVIRONMENT, "block": "nomad", "member": "1",
                         "role": "scheduler"}
    local_cloud.wait_until_ready(node.id, timeout=60)
    [volume] = nomad.volumes()
    assert volume.attachment.instance_id == node.id
    assert nomad["jobs_dir"] == f"{volume.path}/nomad/jobs"

    result = nomad.run_block_tests(dependency_outputs={"base": base_outputs})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout

    # a job runs on the node, bound to its address
    scheduler = Scheduler(nomad["api_url"])
    spec = job_spec("t-nomad-http", ["/usr/bin/python3", "-m", "http.server", "--bind",
                                     NODE_IP, "8090"], directory=nomad["jobs_dir"])
    status = scheduler.submit(spec, nomad["jobs_dir"])
    assert status.state == "RUNNING"
    with urllib.request.urlopen(f"http://{NODE_IP}:8090/", timeout=10) as response:
        assert response.status == 200
    job = (status.pid, read_stat(status.pid)[1])

    # destroy: the node stops its jobs, deregisters, and nothing is left
    node_key = f"/{base['cluster_name']}/nomad/nodes/{ENVIRONMENT}-nomad-1"
    assert etcd_keys(base["endpoints"], node_key) == [node_key]
    started = read_stat(node.pid)[1]
    nomad.destroy()
    assert nomad.instances() == [] and nomad.volumes() == []
    assert not is_alive(node.pid, started)
    assert not is_alive(*job)
    assert etcd_keys(base["endpoints"], node_key) == []
    assert nomad.state_addresses() == []


JOB_TF = """
terraform {
  required_providers {
    localcloud = { source = "infrablocks.local/infrablocks/localcloud", version = "~> 0.1" }
  }
}
provider "localcloud" {}

variable "scheduler_url" {}
variable "jobs_dir" {}
variable "name" { default = "t-nomad-job" }
variable "greeting" { default = "hello" }

resource "localcloud_job" "web" {
  scheduler_url = var.scheduler_url
  jobs_dir      = var.jobs_dir
  name          = var.name
  command = [
    "/usr/bin/python3", "-c",
    "import os, time; print(os.environ['GREETING'], flush=True); time.sleep(3600)",
  ]
  environment   = { GREETING = var.greeting }
}

output "id" { value = localcloud_job.web.id }
output "state" { value = localcloud_job.web.state }
"""


def terraform(workdir: Path, setup, cloud, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(setup.cli_config),
           "LOCALCLOUD_ROOT": str(cloud.root), "CHECKPOINT_DISABLE": "1",
           "TF_IN_AUTOMATION": "1"}
    return subprocess.run([TERRAFORM, *args, "-no-color"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.integration
def test_localcloud_job_create_replace_drift_destroy_under_terraform(
        deploy_block, local_cloud, terraform_setup, tmp_path):
    base = deploy_block("base", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET)
    nomad = deploy_block("nomad", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET,
                         inputs={"base": {"endpoints": base["endpoints"],
                                          "cluster_name": base["cluster_name"]}})
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "main.tf").write_text(JOB_TF)
    (workdir / "terraform.tfvars.json").write_text(json.dumps(
        {"scheduler_url": nomad["api_url"], "jobs_dir": nomad["jobs_dir"]}))
    scheduler = Scheduler(nomad["api_url"])
    jobs_dir = Path(nomad["jobs_dir"])
    try:
        tf = lambda *args: terraform(workdir, terraform_setup, local_cloud, *args)  # noqa: E731
        assert tf("init", "-input=false").returncode == 0

        # create
        result = tf("apply", "-auto-approve", "-input=false")
        assert result.returncode == 0, result.stderr
        first = scheduler.status("t-nomad-job")
        assert first is not None and first.state == "RUNNING"
        assert "hello" in (jobs_dir / "logs" / "t-nomad-job.log").read_text()

        # a changed argument forces replacement: a new process with the new environment
        result = tf("plan", "-input=false", "-var", "greeting=bonjour")
        assert "must be replaced" in result.stdout, result.stdout
        result = tf("apply", "-auto-approve", "-input=false", "-var", "greeting=bonjour")
        assert result.returncode == 0, result.stderr
        second = scheduler.status("t-nomad-job")
        assert second.state == "RUNNING" and second.pid != first.pid
        assert "GREETING='bonjour'" not in (jobs_dir / "t-nomad-job.conf").read_text()
        assert 'GREETING="bonjour"' in (jobs_dir / "t-nomad-job.conf").read_text()

        # drift: the job removed behind Terraform's back is planned for creation again
        scheduler.remove("t-nomad-job", jobs_dir)
        result = tf("plan", "-input=false", "-var", "greeting=bonjour",
                    "-detailed-exitcode")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "has been deleted" in result.stdout and "will be created" in result.stdout

        # an invalid job fails at plan time with a message naming the field
        result = tf("plan", "-input=false", "-var", "name=Bad Name")
        assert result.returncode == 1
        assert "job 'Bad Name' is not valid" in result.stderr, result.stderr
        assert "name 'Bad Name': use 1-63 lower-case letters" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

        # destroy: nothing of the job is left
        result = tf("destroy", "-auto-approve", "-input=false", "-var", "greeting=bonjour")
        assert result.returncode == 0, result.stderr
        assert scheduler.status("t-nomad-job") is None
        assert scheduler.status("bad name") is None
        assert list(jobs_dir.glob("*.conf")) == []
    finally:
        for name in ("t-nomad-job", "Bad Name"):
            with contextlib.suppress(Exception):
                scheduler.remove(name, jobs_dir)

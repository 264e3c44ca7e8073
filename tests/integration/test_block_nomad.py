"""The nomad block for real: on base's etcd (the base block), Terraform creates the scheduler
node (supervisord) with its volume; its block tests pass (XML-RPC answers, node registered in
etcd); a job submitted through the scheduler runs on the node; destroy deregisters the node and
leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import urllib.request

import pytest
from infrablocks.cloud.local.jobs import Scheduler, job_spec
from infrablocks.cloud.local.process import is_alive, read_stat

ENVIRONMENT = "t-nomad"
SUBNET = "127.42.222.0/24"
NODE_IP = "127.42.222.31"
ETCDCTL = "/usr/bin/etcdctl"


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

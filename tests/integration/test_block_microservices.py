"""The microservice blocks for real: base (etcd), stolon (Patroni) and nomad (supervisord) are
created with Terraform on a local cloud, then microservice01 (its own database in stolon) and
microservice02 (stateless) run on nomad as ``localcloud_job``s. Their block tests pass (HTTP
PUT/GET round trip through the app into its database; health + echo), microservice01 keeps
serving when the stolon primary moves, a job killed behind Terraform's back shows as drift and
is recreated by the next apply, and destroy stops the jobs and removes their files.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

import pytest

ENVIRONMENT = "t-micro"
SUBNET = "127.42.223.0/24"
NODE_IP = "127.42.223.31"


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def patroni_leader(stolon) -> dict:
    members = get_json(f"{stolon['patroni_api_urls'][0]}/cluster")["members"]
    return next(m for m in members if m["role"] == "leader")


def switch_primary(stolon) -> tuple[str, str]:
    """Patroni switchover to another member; returns (old leader, new leader) names."""
    leader = patroni_leader(stolon)
    request = urllib.request.Request(
        f"http://{leader['host']}:8008/switchover", method="POST",
        data=json.dumps({"leader": leader["name"]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200, response.read()
    deadline = time.monotonic() + 60
    while True:
        try:
            current = patroni_leader(stolon)
            if current["name"] != leader["name"] and current["state"] == "running":
                return leader["name"], current["name"]
        except (OSError, StopIteration, KeyError):
            pass
        assert time.monotonic() < deadline, "the switchover did not complete"
        time.sleep(0.5)


def wait_healthy(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http("GET", f"{url}/health")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url}/health never answered 200"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.integration
def test_microservices_on_nomad_with_their_database_in_stolon(deploy_block, local_cloud):
    base = deploy_block("base", "1.0.0", environment=ENVIRONMENT, subnet_cidr=SUBNET)
    base_in = {"endpoints": base["endpoints"], "cluster_name": base["cluster_name"]}
    stolon = deploy_block("stolon", "1.0.0", inputs={"base": base_in},
                          environment=ENVIRONMENT, subnet_cidr=SUBNET)
    nomad = deploy_block("nomad", "1.0.0", inputs={"base": base_in},
                         environment=ENVIRONMENT, subnet_cidr=SUBNET)
    for instance in stolon.instances() + nomad.instances():
        local_cloud.wait_until_ready(instance.id, timeout=180)
    nomad_in = {k: nomad[k] for k in ("api_url", "node_ip", "jobs_dir")}
    stolon_in = {k: stolon[k] for k in ("hosts", "port", "superuser", "superuser_password")}

    ms01 = deploy_block("microservice01", "1.0.0",
                        inputs={"base": base_in, "nomad": nomad_in, "stolon": stolon_in},
                        environment=ENVIRONMENT, subnet_cidr=SUBNET)
    ms02 = deploy_block("microservice02", "1.0.0", inputs={"base": base_in, "nomad": nomad_in},
                        environment=ENVIRONMENT, subnet_cidr=SUBNET)
    assert ms01["url"] == f"http://{NODE_IP}:8081" and ms01["database"] == "microservice01"
    assert ms02["url"] == f"http://{NODE_IP}:8082"
    assert ms01.instances() == [] and ms02.instances() == []     # no instances of their own
    jobs_dir = Path(nomad["jobs_dir"])
    assert sorted(p.name for p in jobs_dir.glob("*.conf")) == \
        [f"{ENVIRONMENT}-microservice01.conf", f"{ENVIRONMENT}-microservice02.conf"]
    assert (jobs_dir / f"{ENVIRONMENT}-microservice01.conf").stat().st_mode & 0o077 == 0

    # -- block tests: PUT/GET through the app into its database; health + echo -------------
    result = ms01.run_block_tests(dependency_outputs={"base": base_in, "nomad": nomad_in,
                                                      "stolon": stolon_in})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    result = ms02.run_block_tests(dependency_outputs={"base": base_in, "nomad": nomad_in})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout

    # -- the primary moves: microservice01 reconnects and keeps its data -----------------
    assert http("PUT", f"{ms01['url']}/items/before", b"switchover")[0] == 204
    old, new = switch_primary(stolon)
    assert old != new
    assert http("PUT", f"{ms01['url']}/items/after", b"new-primary")[0] == 204
    assert http("GET", f"{ms01['url']}/items/before") == (200, b"switchover")
    assert http("GET", f"{ms01['url']}/items/after") == (200, b"new-primary")

    # -- drift: a job stopped behind Terraform's back is recreated by the next apply -------
    scheduler = xmlrpc.client.ServerProxy(f"{nomad['api_url']}/RPC2")
    scheduler.supervisor.stopProcess(f"{ENVIRONMENT}-microservice02")
    plan = ms02.plan()
    assert plan.addresses("create") == ["localcloud_job.app"], plan.summary()
    ms02.apply()
    wait_healthy(ms02["url"])
    assert ms02.plan().changes == []

    # -- destroy: the jobs stop and their files go; the node keeps running ----------------
    ms01.destroy()
    ms02.destroy()
    assert list(jobs_dir.glob("*.conf")) == []
    names = [p["name"] for p in scheduler.supervisor.getAllProcessInfo()]
    assert names == []
    for port in (8081, 8082):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{NODE_IP}:{port}/health", timeout=5)

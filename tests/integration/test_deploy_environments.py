"""Environments end to end: the real `doit` on a repo copy, real Terraform, the local cloud.

- `doit create microservice02 --env staging` creates base, nomad, microservice02 only, in order,
  with records and private state; a second create leaves everything alone; status, outputs,
  plan and `graph --env` read it back; destroy refuses while dependents exist, then takes
  everything with --with-dependents.
- `doit env microservice01` (the README's main command) creates, tests, destroys: nothing left.
- Sensitive outputs (stolon's superuser password) never appear in anything the tool prints,
  logs or writes outside the state.
- The S3 backend on moto: state and records are objects in the bucket; destroy removes them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy_repo import DeployRepo, open_deploy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    with open_deploy_repo(tmp_path).closing() as deployment:
        yield deployment


def _ok(result) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def _nodes(report: dict) -> dict[str, dict]:
    return {n["node"]: n for n in report["nodes"]}


def test_create_status_outputs_plan_graph_destroy(repo: DeployRepo, tmp_path: Path) -> None:
    report_file = tmp_path / "create.json"
    _ok(repo.doit("create", "microservice02", "--env", "staging", "--yes", "--report",
                  str(report_file)))

    run = json.loads(report_file.read_text())["run"]
    nodes = _nodes(run)
    assert list(nodes) == ["base", "nomad", "microservice02"]  # stolon is not needed
    assert all(n["status"] == "succeeded" for n in nodes.values())
    assert {n["detail"]["action"] for n in nodes.values()} == {"created"}
    assert nodes["base"]["ended_at"] <= nodes["nomad"]["started_at"]
    assert nodes["nomad"]["ended_at"] <= nodes["microservice02"]["started_at"]
    for node in nodes.values():
        assert node["duration_seconds"] > 0
        assert {"init", "apply"} <= set(node["detail"]["phases"])

    backend = repo.backend()
    records = {r.block: r for r in backend.list_records("staging")}
    assert {b: (r.version, r.status) for b, r in records.items()} == {
        "base": ("1.1.0", "deployed"), "nomad": ("1.0.0", "deployed"),
        "microservice02": ("1.0.0", "deployed")}
    assert all(r.terraform_version and r.outputs_digest for r in records.values())
    state_file = Path(backend.describe("staging", "base"))
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    # microservice02 is a job on the nomad node, not an instance of its own.
    assert {i.tags["block"] for i in repo.instances("staging")} == {"base", "nomad"}
    subnet = ipaddress.ip_network(repo.subnet("staging"))
    assert all(ipaddress.ip_address(i.private_ip) in subnet for i in repo.instances("staging"))

    # The service answers on the nomad node.
    with socket.create_connection((repo.address("staging", 31), 8082), timeout=10):
        pass

    again = repo.doit("create", "microservice02", "--env", "staging", "--yes", "--report",
                      str(report_file))
    _ok(again)
    assert {n["detail"]["action"] for n in json.loads(report_file.read_text())["run"]["nodes"]
            } == {"unchanged"}

    status = repo.doit("status", "--env", "staging", "--json")
    _ok(status)
    [staging] = json.loads(status.stdout)
    assert {b["block"]: b["drift"] for b in staging["blocks"]} == {
        "base": "none", "nomad": "none", "microservice02": "none"}

    outputs = repo.doit("outputs", "base", "--env", "staging", "--json")
    _ok(outputs)
    assert repo.address("staging", 11) in outputs.stdout

    plan = repo.doit("plan", "microservice02", "--env", "staging", "--json")
    _ok(plan)
    assert all(b["has_changes"] is False for b in json.loads(plan.stdout)["blocks"])

    graph = repo.doit("graph", "--env", "staging", "--format", "json")
    _ok(graph)
    deployed = {n["name"]: n["deployed"] for n in json.loads(graph.stdout)["nodes"]}
    assert deployed["nomad"]["version"] == "1.0.0"
    assert deployed["nomad"]["status"] == "deployed"
    assert deployed["stolon"] is None

    refused = repo.doit("destroy", "nomad", "--env", "staging", "--yes")
    assert refused.returncode == 2
    assert "microservice02" in refused.stderr and "--with-dependents" in refused.stderr
    assert "Traceback" not in refused.stderr

    gone = repo.doit("destroy", "base", "--env", "staging", "--with-dependents", "--yes")
    _ok(gone)
    assert "microservice02 → nomad → base" in gone.stdout
    assert repo.instances("staging") == [] and repo.volumes("staging") == []
    assert backend.list_records("staging") == []


def test_doit_env_microservice01_creates_tests_and_destroys(repo: DeployRepo,
                                                            tmp_path: Path) -> None:
    report_file = tmp_path / "env.json"
    result = repo.doit("env", "microservice01", "--report", str(report_file))
    _ok(result)
    assert "block tests microservice01 1.0.0: passed" in result.stdout
    assert "PASSED" in result.stdout

    document = json.loads(report_file.read_text())
    environment = document["environment"]
    assert environment.startswith("t-") and document["ok"] is True
    created = _nodes(document["create"])
    assert list(created) == ["base", "nomad", "stolon", "microservice01"]
    # nomad and stolon ran side by side (both only need base).
    assert created["nomad"]["started_at"] < created["stolon"]["ended_at"]
    assert created["stolon"]["started_at"] < created["nomad"]["ended_at"]
    assert document["tests"][0]["returncode"] == 0
    assert all(n["status"] == "succeeded" for n in document["destroy"]["nodes"])
    assert document["leftovers"] == {}

    assert repo.instances(environment) == [] and repo.volumes(environment) == []
    assert environment not in repo.backend().list_environments()
    assert environment not in repo.workspace().subnets.allocations()
    for made in ("state", "work", "private"):   # lock files and working folders went too
        assert not (repo.root / ".infrablocks" / made / environment).exists(), made


def test_sensitive_outputs_never_printed_or_logged(repo: DeployRepo, tmp_path: Path) -> None:
    report_file = tmp_path / "create.json"
    created = repo.doit("create", "microservice01", "--env", "prod", "--yes", "--report",
                        str(report_file))
    _ok(created)
    backend = repo.backend()
    password = backend.read_outputs("prod", "stolon").unmasked()["superuser_password"]
    assert len(password) >= 16

    shown = [created.stdout, created.stderr, report_file.read_text()]
    for args in (("outputs", "stolon", "--env", "prod"),
                 ("outputs", "stolon", "--env", "prod", "--json"),
                 ("status", "--env", "prod", "--json"),
                 ("plan", "microservice01", "--env", "prod")):
        result = repo.doit(*args)
        _ok(result)
        shown += [result.stdout, result.stderr]
    assert "superuser_password" in shown[3]  # the output is listed, masked
    for text in shown:
        assert password not in text

    # Logs (Terraform's, images'), working directories, caches, the doit database: never the
    # secret. Only the state folders hold it: the state and the private directories (the
    # dependents' sensitive inputs, saved plans).
    state_dir = repo.root / ".infrablocks" / "state"
    private_dir = repo.root / ".infrablocks" / "private"
    assert any(private_dir.rglob("inputs.json"))   # microservice01 receives the password
    checked = 0
    for path in (repo.root / ".infrablocks").rglob("*"):
        if not path.is_file() or path.is_relative_to(state_dir) \
                or path.is_relative_to(private_dir):
            continue
        checked += 1
        assert password.encode() not in path.read_bytes(), f"the password is in {path}"
    assert checked > 10
    assert any(state_dir.rglob("deployment.json"))
    work = repo.root / ".infrablocks" / "work"
    assert stat.S_IMODE(work.stat().st_mode) == 0o700

    _ok(repo.doit("destroy", "base", "--env", "prod", "--with-dependents", "--yes"))
    assert repo.instances("prod") == []


# -- S3 --------------------------------------------------------------------------------------

def test_s3_backend_create_status_destroy(tmp_path: Path, moto_endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="envtest-state")
    repo = open_deploy_repo(tmp_path, state_toml=f'''
backend = "s3"
bucket = "envtest-state"
prefix = "envtest"
endpoint = "{moto_endpoint}"
access_key = "test"
secret_key = "test"
''')
    with repo.closing():
        _ok(repo.doit("create", "nomad", "--env", "staging", "--yes"))

        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="envtest-state")["Contents"]}
        for block in ("base", "nomad"):
            assert f"envtest/staging/{block}/terraform.tfstate" in keys
            assert f"envtest/staging/{block}/deployment.json" in keys
        assert not (repo.root / ".infrablocks" / "state").exists()
        record = json.loads(s3.get_object(Bucket="envtest-state",
                                          Key="envtest/staging/nomad/deployment.json")
                            ["Body"].read())
        assert (record["version"], record["status"]) == ("1.0.0", "deployed")

        status = repo.doit("status", "--env", "staging", "--json")
        _ok(status)
        [staging] = json.loads(status.stdout)
        assert {b["block"]: (b["version"], b["drift"]) for b in staging["blocks"]} == {
            "base": ("1.1.0", "none"), "nomad": ("1.0.0", "none")}

        _ok(repo.doit("destroy", "base", "--env", "staging", "--with-dependents", "--yes"))
        remaining = s3.list_objects_v2(Bucket="envtest-state").get("Contents", [])
        assert [o["Key"] for o in remaining if "/staging/" in o["Key"]
                and not o["Key"].endswith(".tflock")] == []
        assert repo.instances("staging") == []
    for leftover in s3.list_objects_v2(Bucket="envtest-state").get("Contents", []):
        s3.delete_object(Bucket="envtest-state", Key=leftover["Key"])
    s3.delete_bucket(Bucket="envtest-state")   # moto keeps buckets for the whole session


def test_concurrent_inits_beside_running_commands(repo: DeployRepo) -> None:
    """Blocks run side by side: first inits at once, and inits while other working directories
    run Terraform (which starts the provider through .terraform/providers). Terraform's plugin
    cache is not safe for that; `terraform.init.ensure_init` serialises inits and points each
    working directory past the cache, so none of these commands may fail."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from infrablocks.deploy.block_ops import BlockRun
    from infrablocks.terraform.init import ensure_init

    with repo.environment_variables():
        workspace = repo.workspace()
        version = workspace.registry.block_version("base", "1.1.0")
        workdirs = [BlockRun(workspace, f"race{i}", version, "127.42.189.0/24").prepare()
                    for i in range(8)]
        busy = workdirs[:2]
        for workdir in busy:
            ensure_init(workspace.repo_root, workspace.terraform(), workdir)
        stop = threading.Event()
        validations = []

        def keep_validating(workdir: Path) -> None:
            while not stop.is_set():
                validations.append(workspace.terraform().validate(workdir))

        with ThreadPoolExecutor(max_workers=8) as pool:
            validators = [pool.submit(keep_validating, w) for w in busy]
            try:
                inits = list(pool.map(
                    lambda w: ensure_init(workspace.repo_root, workspace.terraform(), w),
                    workdirs[2:]))
            finally:
                stop.set()
            for validator in validators:
                validator.result()   # re-raises a failed validate
    assert inits == [True] * 6
    assert len(validations) >= 2
    for workdir in workdirs:  # each reaches the provider without going through the cache
        link = next((workdir / ".terraform" / "providers").glob("*/*/*/*/*"))
        assert "/plugin-cache/" not in os.readlink(link)
        assert (link / next(p.name for p in link.iterdir())).is_file()


def test_doit_env_keep_prints_how_to_reach_and_destroy(repo: DeployRepo) -> None:
    import re
    import shlex

    result = repo.doit("env", "microservice02", "--keep")
    _ok(result)
    text = " ".join(result.stdout.split())   # undo the console's line wrapping
    [environment] = set(re.findall(r"environment (t-[0-9a-f]{6}) kept", text))
    assert f"doit outputs BLOCK --env {environment}" in text
    assert {i.tags["block"] for i in repo.instances(environment)} == {"base", "nomad"}

    [command] = re.findall(r"destroy all of it with `doit ([^`]+)`", text)
    assert command == f"destroy base --env {environment} --with-dependents --yes"
    _ok(repo.doit(*shlex.split(command)))
    assert repo.instances(environment) == [] and repo.volumes(environment) == []
    assert repo.backend().list_records(environment) == []
    assert environment not in repo.workspace().subnets.allocations()  # given back


NOMAD_1_1_0 = """
[blocks.nomad.versions."1.1.0"]
requires = { base = "~> 1.0" }
images = ["nomad@1.0.0"]
"""


def test_update_replacing_an_instance_with_a_volume_stops_it_first(tmp_path: Path) -> None:
    """nomad 1.1.0 changes its node's user data, which replaces the instance; its volume must
    detach, which a running instance refuses: `doit create` stops it first, keeps the volume."""
    repo = open_deploy_repo(tmp_path, extra_toml=NOMAD_1_1_0)
    with repo.closing():
        source, target = (repo.root / "blocks" / "nomad" / v for v in ("1.0.0", "1.1.0"))
        shutil.copytree(source, target)
        main = (target / "main.tf").read_text()
        assert "    node_name      = local.node_name\n" in main
        (target / "main.tf").write_text(main.replace(
            "    node_name      = local.node_name\n",
            "    node_name      = local.node_name\n    release        = \"1.1.0\"\n"))
        _ok(repo.doit("create", "nomad@1.0.0", "--env", "staging", "--yes"))
        before = {i.name: i for i in repo.instances("staging") if i.tags.get("block") == "nomad"}
        volumes = {v.id for v in repo.volumes("staging") if v.tags.get("block") == "nomad"}

        _ok(repo.doit("create", "nomad@1.1.0", "--env", "staging", "--yes"))

        after = {i.name: i for i in repo.instances("staging") if i.tags.get("block") == "nomad"}
        assert before.keys() == after.keys()
        assert all(after[name].id != before[name].id for name in after)     # replaced
        assert {v.id for v in repo.volumes("staging")
                if v.tags.get("block") == "nomad"} == volumes               # same volume
        assert repo.backend().get_record("staging", "nomad").version == "1.1.0"
        _ok(repo.doit("destroy", "base", "--env", "staging", "--with-dependents", "--yes"))

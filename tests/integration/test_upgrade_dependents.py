"""`doit upgrade base` whose new version changes base's outputs: nomad is re-applied after it.

In a copy of the repository, base 1.2.0 is base 1.1.0 (etcd@1.1.0 image, same addresses) whose
`cluster_name` output is new. With base pinned at 1.0.0, `doit create nomad` deploys base 1.0.0
and nomad 1.0.0 (registered in etcd under /<cluster_name>/nomad/nodes/); `doit upgrade base
--to 1.2.0` rolls the three members, then re-applies nomad: its deployment record's outputs are
re-read, its node registers under the new prefix and `doit plan nomad` is empty afterwards.

The refusal case: the same environment, nomad declared stateful, base 1.3.0 changing
`cluster_name` again: nomad's re-apply would replace its instance, so it is refused with a
message naming nomad, the instance and what to run; nomad is left untouched.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.request

import pytest

from infrablocks.waiting import poll
from tests.support.upgrade_env import ENV, UpgradeRepo


def add_base_version(repo: UpgradeRepo, version: str, cluster_name_suffix: str) -> None:
    """base VERSION: base 1.1.0 whose `cluster_name` output gets ``cluster_name_suffix``."""
    block = repo.root / "blocks" / "base" / version
    shutil.copytree(repo.root / "blocks" / "base" / "1.1.0", block)
    outputs = block / "outputs.tf"
    text = outputs.read_text()
    assert "value       = local.cluster_name" in text
    new_value = f'value       = "${{local.cluster_name}}{cluster_name_suffix}"'
    outputs.write_text(text.replace("value       = local.cluster_name", new_value))
    with (repo.root / "blocks.toml").open("a") as handle:
        handle.write(f'\n[blocks.base.versions."{version}"]\nimages = ["etcd@1.1.0"]\n')


@pytest.fixture
def repo():
    repo = UpgradeRepo(extra_toml='pins = { base = "1.0.0" }\n')
    add_base_version(repo, "1.2.0", "-v2")
    try:
        yield repo
    finally:
        problems = repo.close()
    assert not problems, problems


def nomad_registrations(repo: UpgradeRepo, cluster_name: str) -> list[dict]:
    prefix = f"/{cluster_name}/nomad/nodes/"
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    found = repo.etcd(repo.ips[0], "/v3/kv/range",
                      {"key": _b64(prefix), "range_end": _b64(end)})
    return [json.loads(base64.b64decode(kv["value"])) for kv in found.get("kvs") or []]


def wait_registered(repo: UpgradeRepo, cluster_name: str, timeout: float = 60) -> list[dict]:
    found = poll(lambda: nomad_registrations(repo, cluster_name), timeout=timeout, interval=0.3)
    assert found.ok, f"nomad never registered under /{cluster_name}/"
    return found.value


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def nomad_instance(repo: UpgradeRepo):
    found = [i for i in repo.cloud().describe_instances(
        filters={"tag:environment": ENV, "tag:block": "nomad"}) if i.state != "terminated"]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
@pytest.mark.integration
def test_upgrade_with_changed_outputs_reapplies_dependents(repo):
    created = repo.doit("create", "nomad", "--env", ENV, "--yes")
    assert created.returncode == 0, created.stdout + created.stderr
    repo.wait_healthy()
    backend = repo.workspace().backend
    assert backend.get_record(ENV, "base").version == "1.0.0"
    nomad_before = backend.get_record(ENV, "nomad")
    assert nomad_before.outputs_digest
    old_name = f"base-{ENV}"
    [registration] = wait_registered(repo, old_name)
    node_before = nomad_instance(repo)
    nomad_volume = repo.cloud().describe_volumes(
        filters={"tag:environment": ENV, "tag:block": "nomad"})[0]

    done = repo.upgrade("--to", "1.2.0", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["mode"] == "rolling" and len(outcome["order"]) == 3
    assert outcome["dependents"] == ["nomad"]
    assert "re-apply nomad 1.0.0 (2 to replace)" in done.stderr
    assert repo.record_version() == "1.2.0"
    assert repo.journal()["status"] == "completed"

    backend = repo.workspace().backend
    nomad_after = backend.get_record(ENV, "nomad")
    assert nomad_after.version == "1.0.0"
    assert nomad_after.applied_at > nomad_before.applied_at     # the record was rewritten
    # nomad's node was re-created with base's new cluster name, on the same data volume
    node_after = nomad_instance(repo)
    assert node_after.id != node_before.id
    assert node_after.user_data["cluster_name"] == f"{old_name}-v2"
    assert node_after.private_ip == node_before.private_ip
    volume_after = repo.cloud().describe_volumes(ids=[nomad_volume.id])[0]
    assert volume_after.attachment.instance_id == node_after.id
    [moved] = wait_registered(repo, f"{old_name}-v2")
    assert moved["api_url"] == registration["api_url"]

    plan = repo.doit("plan", "nomad", "--env", ENV, "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert _plan_is_empty(json.loads(plan.stdout)), plan.stdout

    # -- the refusal: a stateful dependent whose re-apply would replace its instance ---------
    add_base_version(repo, "1.3.0", "-v3")
    toml = repo.root / "blocks.toml"
    toml.write_text(toml.read_text().replace(
        "[blocks.nomad]\n", "[blocks.nomad]\nstateful = true\n"
        "rolling = { instances = \"localcloud_instance.node\", "
        "attachments = \"localcloud_volume_attachment.node\", check = \"http\" }\n", 1))
    refused = repo.upgrade("--to", "1.3.0")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "nomad reads base's changed outputs" in refused.stderr
    assert "localcloud_instance.node" in refused.stderr
    assert f"doit upgrade NAME --env {ENV} --to VERSION" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert repo.record_version() == "1.3.0"          # base itself was upgraded before
    assert nomad_instance(repo).id == node_after.id                 # nomad left untouched
    assert repo.workspace().backend.get_record(ENV, "nomad").outputs_digest == \
        nomad_after.outputs_digest


def _plan_is_empty(report: dict) -> bool:
    """`doit plan --json`: every block planned at its deployed version, without changes."""
    return all(b["has_changes"] is False and not b["changes"] and b["deployed"] == b["target"]
               for b in report["blocks"])


@pytest.mark.slow
@pytest.mark.integration
def test_changed_outputs_reach_a_service_on_the_replaced_scheduler(repo):
    """microservice02 reads base (its etcd key) and nomad (where it runs): after the upgrade,
    nomad's node is replaced first, then the service's job is re-applied and serves again,
    registered under base's new cluster name; every plan is empty."""
    created = repo.doit("create", "microservice02", "--env", ENV, "--yes")
    assert created.returncode == 0, created.stdout + created.stderr
    repo.wait_healthy()
    url = f"http://{repo.address(31)}:8082"
    assert wait_health(url)["service"] == "microservice02"
    before = repo.workspace().backend.get_record(ENV, "microservice02")

    done = repo.upgrade("--to", "1.2.0", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["mode"] == "rolling"
    assert outcome["dependents"] == ["nomad", "microservice02"]     # dependency order
    after = repo.workspace().backend.get_record(ENV, "microservice02")
    assert after.version == "1.0.0" and after.applied_at > before.applied_at

    assert wait_health(url)["service"] == "microservice02"
    key = f"/base-{ENV}-v2/services/microservice02"
    registered = poll(lambda: repo.get(key), lambda value: value is not None, timeout=30,
                      interval=0.3)
    assert registered.ok, f"microservice02 never registered at {key}"
    assert registered.value == url

    plan = repo.doit("plan", "microservice02", "--env", ENV, "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    report = json.loads(plan.stdout)
    assert {b["block"] for b in report["blocks"]} == {"base", "nomad", "microservice02"}
    assert _plan_is_empty(report), plan.stdout


def wait_health(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3) as response:
                return json.loads(response.read())
        except OSError:
            assert time.monotonic() < deadline, f"{url}/health never answered"
            time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.integration
def test_a_plain_upgrade_with_changed_outputs_reapplies_dependents(repo):
    """base 1.1.0 → 1.2.0 replaces no member (same image): a plain apply, then nomad."""
    toml = repo.root / "blocks.toml"
    toml.write_text(toml.read_text().replace('pins = { base = "1.0.0" }',
                                             'pins = { base = "1.1.0" }'))
    created = repo.doit("create", "nomad", "--env", ENV, "--yes")
    assert created.returncode == 0, created.stdout + created.stderr
    repo.wait_healthy()
    wait_registered(repo, f"base-{ENV}")
    members = {n: i.id for n, i in repo.instances().items()}

    done = repo.upgrade("--to", "1.2.0", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["mode"] == "plain" and outcome["dependents"] == ["nomad"]
    assert {n: i.id for n, i in repo.instances().items()} == members
    assert nomad_instance(repo).user_data["cluster_name"] == f"base-{ENV}-v2"
    wait_registered(repo, f"base-{ENV}-v2")
    plan = repo.doit("plan", "nomad", "--env", ENV, "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert _plan_is_empty(json.loads(plan.stdout)), plan.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_a_crash_before_the_reapply_is_resumed_into_it(repo):
    """Killed (the fault hook) right after base's record: nomad still reads the old outputs,
    the journal is not completed, and `--resume` re-applies nomad."""
    created = repo.doit("create", "nomad", "--env", ENV, "--yes")
    assert created.returncode == 0, created.stdout + created.stderr
    repo.wait_healthy()
    node_before = nomad_instance(repo)

    killed = repo.upgrade("--to", "1.2.0", INFRABLOCKS_FAULT="after:record")
    assert killed.returncode == 137, killed.stdout + killed.stderr
    assert repo.record_version() == "1.2.0"
    journal = repo.journal()
    assert (journal["status"], journal["phase"]) == ("running", "dependents")
    assert nomad_instance(repo).id == node_before.id                # not re-applied yet

    fresh = repo.upgrade("--to", "1.2.0")
    assert fresh.returncode != 0 and "--resume" in fresh.stderr, fresh.stdout + fresh.stderr

    resumed = repo.upgrade("--resume", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["dependents"] == ["nomad"]
    assert repo.journal()["status"] == "completed"
    assert nomad_instance(repo).user_data["cluster_name"] == f"base-{ENV}-v2"
    wait_registered(repo, f"base-{ENV}-v2")
    plan = repo.doit("plan", "nomad", "--env", ENV, "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert _plan_is_empty(json.loads(plan.stdout)), plan.stdout

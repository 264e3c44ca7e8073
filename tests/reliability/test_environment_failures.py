"""A block that fails mid-create, on a repo copy whose nomad 1.0.0 ends with a failing resource.

- fail-fast (default): nothing new starts after the failure; with ``--jobs 1`` stolon (ready at
  the same time as nomad, queued behind it) is "not started", microservice01 skipped.
- ``--keep-going``: stolon, independent of nomad, is created; microservice01 is skipped with the
  reason; the failed block's record says ``failed`` and what it created is still destroyable.
- ``doit env``: the failure makes it exit non-zero, and it still destroys everything it created:
  nothing is left on the local cloud, in the state backend or in the subnet table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy_repo import DeployRepo, break_block, open_deploy_repo

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

BROKEN = "nomad-is-broken-on-purpose"


@pytest.fixture
def broken_repo(tmp_path: Path) -> Iterator[DeployRepo]:
    with open_deploy_repo(tmp_path).closing() as deployment:
        break_block(deployment, "nomad", "1.0.0", BROKEN)
        yield deployment


def _nodes(report: dict) -> dict[str, dict]:
    return {n["node"]: n for n in report["nodes"]}


def test_fail_fast_then_keep_going(broken_repo: DeployRepo, tmp_path: Path) -> None:
    repo = broken_repo
    report_file = tmp_path / "run.json"

    result = repo.doit("create", "microservice01", "--env", "staging", "--jobs", "1", "--yes",
                       "--report", str(report_file))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    nodes = _nodes(json.loads(report_file.read_text())["run"])
    assert nodes["base"]["status"] == "succeeded"
    assert nodes["nomad"]["status"] == "failed"
    assert BROKEN in nodes["nomad"]["error"]
    assert nodes["stolon"]["status"] == "not started"
    assert "after nomad failed" in nodes["stolon"]["reason"]
    assert nodes["microservice01"]["status"] == "skipped"
    assert nodes["microservice01"]["reason"] == "nomad failed"
    assert "left behind:" in result.stderr and "nomad: record `failed` at 1.0.0" in result.stderr

    result = repo.doit("create", "microservice01", "--env", "staging", "--keep-going", "--yes",
                       "--report", str(report_file))
    assert result.returncode == 1, result.stdout + result.stderr
    nodes = _nodes(json.loads(report_file.read_text())["run"])
    assert nodes["base"]["detail"]["action"] == "unchanged"
    assert nodes["nomad"]["status"] == "failed"
    assert nodes["stolon"]["status"] == "succeeded"
    assert nodes["microservice01"]["status"] == "skipped"
    assert nodes["microservice01"]["blocked_by"] == ["nomad"]

    records = {r.block: r.status for r in repo.backend().list_records("staging")}
    assert records == {"base": "deployed", "nomad": "failed", "stolon": "deployed"}
    # nomad's instance was created before the failing resource: it is in the state.
    assert [i.tags["block"] for i in repo.instances("staging")].count("nomad") >= 1

    destroyed = repo.doit("destroy", "base", "--env", "staging", "--with-dependents", "--yes")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert repo.instances("staging") == [] and repo.volumes("staging") == []
    assert repo.backend().list_records("staging") == []


def test_doit_env_destroys_everything_after_a_failed_create(broken_repo: DeployRepo,
                                                            tmp_path: Path) -> None:
    repo = broken_repo
    report_file = tmp_path / "env.json"
    result = repo.doit("env", "microservice01", "--keep-going", "--report", str(report_file))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "Traceback" not in result.stderr

    document = json.loads(report_file.read_text())
    environment = document["environment"]
    assert document["ok"] is False and document["tests"] == []
    created = _nodes(document["create"])
    assert created["nomad"]["status"] == "failed"
    assert created["stolon"]["status"] == "succeeded"
    assert created["microservice01"]["status"] == "skipped"
    destroyed = _nodes(document["destroy"])
    assert set(destroyed) == {"base", "nomad", "stolon"}
    assert all(n["status"] == "succeeded" for n in destroyed.values())
    assert document["leftovers"] == {}  # Terraform destroyed it all; the sweep found nothing

    assert repo.instances() == [] and repo.volumes() == []
    assert environment not in repo.backend().list_environments()
    assert environment not in repo.workspace().subnets.allocations()


def test_failed_update_keeps_the_previous_version_in_the_record(tmp_path: Path) -> None:
    """nomad 1.0.0 deployed; the pin moves staging to a broken nomad 1.1.0: the update fails,
    the record says `failed` at 1.1.0 and remembers 1.0.0; status shows it; destroy works."""
    import shutil

    repo = open_deploy_repo(tmp_path, extra_toml='''
[blocks.nomad.versions."1.1.0"]
requires = { base = "~> 1.0" }
images = ["nomad@1.0.0"]
''')
    toml = repo.root / "blocks.toml"
    original = toml.read_text()

    def pin_nomad(version: str) -> None:
        pins = f'pins = {{ nomad = "{version}" }}\n'
        toml.write_text(original.replace("[environments.staging]\n",
                                         f"[environments.staging]\n{pins}"))

    with repo.closing():
        shutil.copytree(repo.root / "blocks" / "nomad" / "1.0.0",
                        repo.root / "blocks" / "nomad" / "1.1.0")
        break_block(repo, "nomad", "1.1.0", BROKEN)
        pin_nomad("1.0.0")
        _succeeds(repo.doit("create", "nomad", "--env", "staging", "--yes"))
        pin_nomad("1.1.0")

        failed = repo.doit("create", "nomad", "--env", "staging", "--yes")
        assert failed.returncode == 1 and BROKEN in failed.stdout + failed.stderr
        record = repo.backend().get_record("staging", "nomad")
        assert (record.version, record.status) == ("1.1.0", "failed")
        assert record.extra == {"previous_version": "1.0.0"}

        status = repo.doit("status", "--env", "staging", "--json", "--no-drift")
        _succeeds(status)
        [staging] = json.loads(status.stdout)
        assert {b["block"]: (b["version"], b["status"]) for b in staging["blocks"]} == {
            "base": ("1.1.0", "deployed"), "nomad": ("1.1.0", "failed")}

        _succeeds(repo.doit("destroy", "base", "--env", "staging", "--with-dependents", "--yes"))
        assert repo.instances("staging") == []


def _succeeds(result) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"

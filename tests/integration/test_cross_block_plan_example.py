"""The cross-block plan on the example monorepo: real Terraform, real images, the local cloud.

- In an empty environment, `doit plan microservice01` plans base, nomad, stolon and
  microservice01 in one plan (images not built yet, stolon's password and nomad's jobs
  directory known after apply), changes nothing, and `doit create` then does exactly the
  planned number of changes per block; the saved plan is stale afterwards.
- `doit plan microservice02 --out FILE` then `doit apply FILE` creates the environment as
  reviewed (images built at apply, blocks planned again where their inputs were unknown) and
  the service answers.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy_repo import DeployRepo, open_deploy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    with open_deploy_repo(tmp_path).closing() as deployment:
        yield deployment


def _ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _counts(report: dict) -> dict[str, dict[str, int]]:
    return {b["block"]: b["counts"] for b in report["blocks"]}


def _nothing_left(repo: DeployRepo, environment: str) -> None:
    assert repo.instances() == [] and repo.volumes() == []
    assert repo.cloud().list_images() == []                 # images are built by apply only
    backend = repo.backend()
    assert environment not in backend.list_environments()
    state_dir = repo.root / ".infrablocks" / "state"
    assert not (state_dir / environment).exists()
    work = repo.root / ".infrablocks" / "work"
    assert not work.exists() or sorted(p.name for p in work.iterdir()) == []


def test_empty_environment_planned_whole_then_create_does_what_was_planned(
        repo: DeployRepo, tmp_path: Path) -> None:
    saved = tmp_path / "staging.plan"
    report = json.loads(_ok(repo.doit("plan", "microservice01", "--env", "staging", "--json",
                                      "--out", str(saved))))
    assert [b["block"] for b in report["blocks"]] == ["base", "nomad", "stolon",
                                                      "microservice01"]
    planned = _counts(report)
    assert planned == {"base": {"create": 9}, "nomad": {"create": 3},
                       "stolon": {"create": 10}, "microservice01": {"create": 1}}
    blocks = {b["block"]: b for b in report["blocks"]}
    assert blocks["microservice01"]["unknown_inputs"] == ["nomad.jobs_dir",
                                                          "stolon.superuser_password"]
    assert blocks["nomad"]["unknown_inputs"] == []          # base's endpoints are known
    assert blocks["base"]["target"] == "1.1.0"               # staging takes the newest
    assert blocks["base"]["pending_images"] == ["etcd@1.1.0"]
    assert all(b["apply"] == "replan" for b in blocks.values())   # no image built yet
    _nothing_left(repo, "staging")

    report_file = tmp_path / "create.json"
    _ok(repo.doit("create", "microservice01", "--env", "staging", "--yes", "--report",
                  str(report_file)))
    run = json.loads(report_file.read_text())["run"]
    created = {n["node"]: n["detail"]["changes"] for n in run["nodes"]}
    assert created == planned

    after = json.loads(_ok(repo.doit("plan", "microservice01", "--env", "staging", "--json")))
    assert all(not b["has_changes"] and b["deployed"] == b["target"]
               for b in after["blocks"]), after
    stale = repo.doit("apply", str(saved))
    assert stale.returncode == 1 and "is stale" in stale.stderr, stale.stdout + stale.stderr


def test_saved_plan_applied_on_the_local_cloud(repo: DeployRepo, tmp_path: Path) -> None:
    saved = tmp_path / "prod.plan"
    report = json.loads(_ok(repo.doit("plan", "microservice02", "--env", "prod", "--json",
                                      "--out", str(saved))))
    planned = _counts(report)
    assert planned == {"base": {"create": 9}, "nomad": {"create": 3},
                       "microservice02": {"create": 1}}
    report_file = tmp_path / "apply.json"
    applied = repo.doit("apply", str(saved), "--report", str(report_file))
    _ok(applied)
    run = json.loads(report_file.read_text())["run"]
    assert {n["node"]: n["detail"]["changes"] for n in run["nodes"]} == planned
    records = {r.block: (r.version, r.status) for r in repo.backend().list_records("prod")}
    assert records == {"base": ("1.0.0", "deployed"), "nomad": ("1.0.0", "deployed"),
                       "microservice02": ("1.0.0", "deployed")}
    # like create, apply waits until each block is ready (instances, health check) before it
    # records it deployed: the service answers at once, no waiting here
    assert all("ready" in n["detail"]["phases"] for n in run["nodes"]), run["nodes"]
    assert run["nodes"][0]["detail"]["ready"], run["nodes"][0]["detail"]
    with urllib.request.urlopen(f"http://{repo.address('prod', 31)}:8082/health",
                                timeout=3) as r:
        assert json.loads(r.read())["service"] == "microservice02"
    after = json.loads(_ok(repo.doit("plan", "microservice02", "--env", "prod", "--json")))
    assert all(not b["has_changes"] for b in after["blocks"]), after

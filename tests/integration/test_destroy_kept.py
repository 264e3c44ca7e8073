"""`destroy` of an environment's last block gives the environment's cloud network back; when
the cloud keeps it (AWS refuses to delete a subnet something else still uses), the run says why
in its warnings instead of dropping the reason. Real Terraform on a `terraform_data` block; the
platform's refusal is injected (moto deletes a subnet in use)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.platforms.local import LocalPlatform
from tests.support.tfdata_repo import ENV, TfDataRepo, ok

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REASON = ("subnet subnet-0abc (172.31.64.0/24): DependencyViolation: The subnet 'subnet-0abc' "
          "has dependencies and cannot be deleted.")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[TfDataRepo]:
    repo = TfDataRepo(tmp_path)
    repo.add("net", "1.0.0", 'resource "terraform_data" "net" {\n  input = "x"\n}\n')
    try:
        yield repo
    finally:
        repo.close()


def test_a_subnet_the_cloud_keeps_is_named_in_the_runs_warnings(
        repo: TfDataRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(repo.doit("create", "net", "--env", ENV, "--yes"))
    for key, value in repo.environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(LocalPlatform, "release_environment_subnet",
                        lambda self, environment: REASON)
    from infrablocks.deploy.orchestrate import destroy
    from infrablocks.deploy.workspace import open_workspace

    workspace = open_workspace(repo.root)
    try:
        report = destroy(workspace, ["net"], ENV)
    finally:
        workspace.close()
    assert report is not None and report.ok
    assert report.warnings == [f"kept in the cloud: {REASON}"]
    assert repo.backend().list_blocks(ENV) == []

"""`doit cloud --purge` of an environment with deployments (infrablocks.deploy.purge): asked
first, never under a running command, and its records left truthful. The platform is an
in-memory fake (what it holds per environment); the state backend is the real local one."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrablocks.deploy.purge import PurgePreview, purge_environment
from infrablocks.state import DEPLOYED, FAILED, PURGED, LockHeldError, new_record
from infrablocks.state.local import LocalBackend


class FakePlatform:
    def __init__(self) -> None:
        self.held = {"prod": (["prod-base-1 (i-1)", "prod-base-2 (i-2)"], ["prod-data-1 (v-1)"]),
                     "t-gone00": (["t-gone00-db (i-9)"], [])}
        self.swept: list[str] = []

    def inventory(self, environment: str) -> dict:
        instances, volumes = self.held.get(environment, ([], []))
        return {"instances": [{"name": n.split(" ")[0], "id": n.split("(")[1][:-1]}
                              for n in instances],
                "volumes": [{"name": n.split(" ")[0], "id": n.split("(")[1][:-1]}
                            for n in volumes]}

    def sweep_environment(self, environment: str) -> dict[str, list[str]]:
        self.swept.append(environment)
        instances, volumes = self.held.pop(environment, ([], []))
        return {"instances": instances, "volumes": volumes, "kept": []}


class FakeSubnets:
    def __init__(self) -> None:
        self.released: list[str] = []

    def release(self, environment: str) -> None:
        self.released.append(environment)


class FakeWorkspace:
    def __init__(self, root: Path) -> None:
        self.backend = LocalBackend(root)
        self._platform = FakePlatform()
        self.subnets = FakeSubnets()

    def platform(self, environment: str) -> FakePlatform:
        return self._platform


@pytest.fixture
def workspace(tmp_path: Path) -> FakeWorkspace:
    workspace = FakeWorkspace(tmp_path / "state")
    for block, status in (("base", DEPLOYED), ("nomad", FAILED)):
        workspace.backend.put_record(new_record("prod", block, "1.0.0", outputs=None,
                                                terraform_version="1.15.0", status=status))
    return workspace


def test_leftovers_are_purged_without_asking(workspace):
    def never(preview: PurgePreview) -> bool:
        raise AssertionError("asked")

    removed = purge_environment(workspace, "t-gone00", confirm=never)
    assert removed is not None and removed["instances"] == ["t-gone00-db (i-9)"]
    assert workspace.subnets.released == ["t-gone00"]   # nothing left: the claim goes back


def test_a_deployed_environment_is_purged_only_when_confirmed(workspace):
    asked: list[PurgePreview] = []
    assert purge_environment(workspace, "prod",
                             confirm=lambda p: asked.append(p) or False) is None
    assert asked == [PurgePreview("prod", ["base", "nomad"],
                                  ["prod-base-1 (i-1)", "prod-base-2 (i-2)"],
                                  ["prod-data-1 (v-1)"])]
    assert workspace.platform("prod").swept == []
    assert {r.status for r in workspace.backend.list_records("prod")} == {DEPLOYED, FAILED}

    removed = purge_environment(workspace, "prod", confirm=lambda p: True)
    assert removed is not None and removed["volumes"] == ["prod-data-1 (v-1)"]
    records = {r.block: r for r in workspace.backend.list_records("prod")}
    assert {b: r.status for b, r in records.items()} == {"base": PURGED, "nomad": PURGED}
    assert records["base"].extra["purged"] == {
        "previous_status": DEPLOYED, "instances": ["prod-base-1 (i-1)", "prod-base-2 (i-2)"],
        "volumes": ["prod-data-1 (v-1)"]}
    assert records["nomad"].extra["purged"]["previous_status"] == FAILED
    assert records["base"].version == "1.0.0"
    assert workspace.subnets.released == []   # its state still says where it was: kept


def test_a_purge_never_runs_under_a_command_working_on_the_environment(workspace):
    with workspace.backend.acquire_lock("prod", "nomad", "create"), \
            pytest.raises(LockHeldError):
        purge_environment(workspace, "prod", confirm=lambda p: True)
    assert workspace.platform("prod").swept == []
    assert {r.status for r in workspace.backend.list_records("prod")} == {DEPLOYED, FAILED}

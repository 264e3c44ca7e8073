"""A deployed environment keeps its subnet; purge asks first; the last destroy gives back.

The real `doit` on a repo copy (base in prod, on the local cloud):

- a blocks.toml pin that differs from prod's subnet is refused by status (as a drift error),
  plan and create, naming the key, the subnet prod is on and what to do; neither the
  machine-wide table nor the checkout's memory changes; prod's instances stay;
- `doit plan` of an environment never created claims nothing;
- `doit cloud --purge prod` refuses without --yes (pointing to `doit destroy`, naming what it
  would remove); with --yes it removes the instances and volumes and the records say `purged`;
- destroying the last block gives the subnet back and removes work/prod, private/prod and the
  state directory.
"""

from __future__ import annotations

import json
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


def _entries(repo: DeployRepo) -> dict[str, dict]:
    """This checkout's entries of the machine-wide table, by environment."""
    from infrablocks.subnets import SubnetTable

    with repo.environment_variables():
        path = SubnetTable().path
    raw = json.loads(path.read_text()) if path.exists() else {}
    return {e["environment"]: e for e in (raw.get("environments") or {}).values()
            if Path(e["checkout"]) == repo.root.resolve()}


def _memory(repo: DeployRepo) -> str:
    return (repo.root / ".infrablocks" / "subnets.json").read_text()


def test_a_pin_never_moves_prod_purge_asks_and_the_last_destroy_gives_back(
        repo: DeployRepo) -> None:
    _ok(repo.doit("create", "base", "--env", "prod", "--yes"))
    entry = _entries(repo)["prod"]
    subnet = entry["subnet"]
    addresses = sorted(i.private_ip for i in repo.instances("prod"))
    memory = _memory(repo)
    elsewhere = "127.42.98.0/24" if subnet != "127.42.98.0/24" else "127.42.97.0/24"

    toml = repo.root / "blocks.toml"
    original = toml.read_text()
    assert original.count("\n[environments.prod]\n") == 1
    toml.write_text(original.replace("\n[environments.prod]\n",
                                     f'\n[environments.prod]\nsubnet = "{elsewhere}"\n'))
    status = repo.doit("status", "--env", "prod", "--json")
    _ok(status)
    [prod] = json.loads(status.stdout)
    [base] = prod["blocks"]
    assert base["drift"].startswith("error:") and f"deployed on {subnet}" in base["drift"]
    for command in (("plan", "base", "--env", "prod"),
                    ("create", "base", "--env", "prod", "--yes")):
        refused = repo.doit(*command)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
        assert f"deployed on {subnet}" in refused.stderr
        assert "environments.prod] subnet" in refused.stderr
        assert f'subnet = "{subnet}"' in refused.stderr
    assert _entries(repo)["prod"] == entry and _memory(repo) == memory
    assert sorted(i.private_ip for i in repo.instances("prod")) == addresses
    toml.write_text(original)

    # an environment that was only planned holds no subnet
    _ok(repo.doit("plan", "base", "--env", "staging"))
    assert "staging" not in _entries(repo)

    refused = repo.doit("cloud", "--purge", "prod")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "doit destroy base --env prod" in refused.stderr and "--yes" in refused.stderr
    assert all(i.name in refused.stderr for i in repo.instances("prod"))
    assert len(repo.instances("prod")) == len(addresses)

    purged = repo.doit("cloud", "--purge", "prod", "--yes", "--json")
    _ok(purged)
    assert len(json.loads(purged.stdout)["instances"]) == len(addresses)
    assert repo.instances("prod") == [] and repo.volumes("prod") == []
    status = repo.doit("status", "--env", "prod", "--json", "--no-drift")
    _ok(status)
    [prod] = json.loads(status.stdout)
    assert [(b["block"], b["status"]) for b in prod["blocks"]] == [("base", "purged")]
    [record] = repo.backend().list_records("prod")
    assert record.extra["purged"]["previous_status"] == "deployed"
    assert len(record.extra["purged"]["instances"]) == len(addresses)
    assert _entries(repo)["prod"]["subnet"] == subnet      # its state still exists

    infrablocks = repo.root / ".infrablocks"
    assert (infrablocks / "work" / "prod" / "base").is_dir()
    _ok(repo.doit("destroy", "base", "--env", "prod", "--yes"))
    assert "prod" not in _entries(repo)
    assert "prod" not in json.loads(_memory(repo))
    for leftover in (infrablocks / "work" / "prod", infrablocks / "private" / "prod",
                     infrablocks / "state" / "prod"):
        assert not leftover.exists(), leftover

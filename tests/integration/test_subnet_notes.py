"""A command that reclaims a stale entry of the machine-wide subnet table says so: the addresses
another checkout held are now this one's (``note: reclaimed …``). Real doit and Terraform on a
`terraform_data` block, with a private machine-wide table (INFRABLOCKS_STATE_DIR)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infrablocks.environments import SubnetAllocator
from infrablocks.subnets import STATE_DIR_ENV, SubnetTable
from tests.support.tfdata_repo import DOIT, ENV, TfDataRepo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PINNED = "127.42.233.0/24"


def test_a_reclaimed_subnet_is_said_by_the_command(tmp_path: Path) -> None:
    machine = tmp_path / "machine"
    gone = tmp_path / "gone-checkout"
    gone.mkdir()
    (gone / "blocks.toml").write_text("")
    table = SubnetTable(machine, bound=set)
    assert SubnetAllocator(gone, table=table).subnet_for("prod", PINNED) == PINNED
    shutil.rmtree(gone)                       # its checkout is gone: the entry is stale

    repo = TfDataRepo(tmp_path / "repo", environments=f'[environments.{ENV}]\n'
                                                      f'subnet = "{PINNED}"\n')
    try:
        repo.add("net", "1.0.0", 'resource "terraform_data" "net" {\n  input = "x"\n}\n')
        env = {**repo.environ, STATE_DIR_ENV: str(machine)}

        def doit(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(DOIT), *args], cwd=repo.root, env=env, text=True,
                                  capture_output=True, timeout=300, check=False,
                                  stdin=subprocess.DEVNULL)

        created = doit("create", "net", "--env", ENV, "--yes")
        assert created.returncode == 0, created.stdout + created.stderr
        said = " ".join(created.stderr.split())
        assert f"note: reclaimed {PINNED} from environment 'prod' of {gone.resolve()}" in said
        again = doit("create", "net", "--env", ENV, "--yes")   # nothing left to reclaim
        assert again.returncode == 0 and "reclaimed" not in again.stderr, again.stderr
        destroyed = doit("destroy", "net", "--env", ENV, "--yes")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        assert SubnetAllocator(repo.root, table=table).allocations() == {}
    finally:
        repo.close()

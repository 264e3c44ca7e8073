"""A saved plan keeps its subnet until it is applied: `doit plan --out` in one checkout, a
`create` in another checkout on the same machine in between, then `doit apply` of the saved
plan — it applies on the subnet it was made for instead of refusing a plan whose subnet was
taken (CI saw this; the planning process is gone and nothing is deployed yet, which used to
make the claim stale). Real doit and Terraform on `terraform_data` blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.conftest import LONG_ENV, TINY, every_command_repo, run_doit

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_saved_plan_is_applied_on_its_subnet_after_another_checkout_allocated(
        tmp_path: Path) -> None:
    first, second = every_command_repo(tmp_path / "a"), every_command_repo(tmp_path / "b")
    try:
        planned = run_doit(first, "plan", TINY, "--env", LONG_ENV, "--out", "tiny.plan",
                           "--json", timeout=300)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        created = run_doit(second, "create", TINY, "--env", LONG_ENV, "--yes", timeout=300)
        assert created.returncode == 0, created.stdout + created.stderr
        applied = run_doit(first, "apply", "tiny.plan", timeout=300)
        assert applied.returncode == 0, applied.stdout + applied.stderr
    finally:
        for repo in (first, second):
            run_doit(repo, "destroy", TINY, "--env", LONG_ENV, "--yes", timeout=300)

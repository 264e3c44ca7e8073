"""`doit plan` and `doit apply` on the example repository, without Terraform: what the user gets
wrong is a clear error (exit 2, no traceback) and nothing is run or written.

The runs that plan and apply real blocks are in tests/integration/test_cross_block_plan*.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Doit = Callable[..., subprocess.CompletedProcess[str]]  # the `doit` fixture (conftest.py)


def _usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize("args, fragments", [
    (("plan", "--env", "staging"), ("name the blocks to plan",)),
    (("plan", "nosuch", "--env", "staging"), ("nosuch",)),
    (("plan", "base", "--env", "stagign"), ("unknown environment `stagign`",)),
    (("plan", "base", "--env", "staging", "--jobs", "0"),
     ("--jobs expects a whole number, at least 1, got '0'",)),
    (("plan", "base", "--env", "staging", "--out", "no/such/dir/x.plan"),
     ("--out 'no/such/dir/x.plan'", "the directory no/such/dir does not exist")),
    (("plan", "base", "--env", "staging", "--out", "."), ("--out '.'", "is a directory")),
    (("apply",), ("exactly one plan file, got 0",)),
    (("apply", "a.plan", "b.plan"), ("exactly one plan file, got 2",)),
    (("apply", "missing.plan"), ("no plan file missing.plan", "doit plan TARGET")),
])
def test_bad_arguments(example_repo: Path, doit: Doit, args: tuple[str, ...],
                       fragments: tuple[str, ...]) -> None:
    _usage_error(doit(example_repo, *args), *fragments)
    work = example_repo / ".infrablocks" / "work"
    assert not work.exists() or not any(work.iterdir())   # nothing was planned


def test_a_file_that_is_not_a_saved_plan(example_repo: Path, doit: Doit) -> None:
    junk = example_repo / "junk.plan"
    junk.write_text("not a plan")
    junk.chmod(0o644)
    result = doit(example_repo, "apply", "junk.plan")
    _usage_error(result, "junk.plan is not a readable saved plan")
    # not a plan: no word about the secrets a plan would hold (a saved plan gets the warning:
    # tests/integration/test_cross_block_plan.py)
    assert "may be read by other users" not in result.stderr
    _usage_error(doit(example_repo, "apply", "blocks.toml"), "blocks.toml is not a readable")
    _usage_error(doit(example_repo, "apply", "blocks"), "blocks is a directory, not a plan file")

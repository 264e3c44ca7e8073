"""Sensitive values never leave the state folders (issue 10, part 2), with real Terraform.

A small repository of ``terraform_data`` blocks:

- ``vault`` makes a secret at apply time (from a random id: it exists nowhere but in the state)
  and outputs it ``sensitive = true``;
- ``app`` receives it in a variable declared ``sensitive = true`` and builds a (sensitive)
  connection string from it, in a resource and an output;
- ``leaky`` receives it in a variable that is *not* sensitive and builds a plain output from it:
  `doit check` reports it and `create` refuses it before applying.

Every command runs (create, plan, status, outputs, graph --env, env --keep, destroy, check, the
refused create); the secrets (the persistent environment's and the throwaway one's) must
appear in none of their outputs, in no file the tool wrote outside the state folders
(``.infrablocks/state``, ``.infrablocks/private``), in no report, and in nothing a CI run would
upload (``.infrablocks/logs/``) — and every log is 0600 in 0700 folders.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy_repo import DODO, DeployRepo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSIONS = """terraform {
  required_version = ">= 1.5"
}
"""
COMMON_VARIABLES = """variable "environment" {
  type = string
}

variable "subnet_cidr" {
  type = string
}
"""
VAULT = """resource "terraform_data" "seed" {
  input = var.environment
}

locals {
  password = "pw-${sha256(terraform_data.seed.id)}"
}

output "password" {
  value     = local.password
  sensitive = true
}

output "endpoint" {
  value = "db.${var.environment}.internal"
}
"""
APP = """variable "vault" {
  type = object({
    password = string
    endpoint = string
  })
  sensitive = true
}

resource "terraform_data" "connection" {
  input = "postgres://app:${var.vault.password}@${var.vault.endpoint}/app"
}

output "dsn" {
  value     = terraform_data.connection.output
  sensitive = true
}

output "name" {
  value = "app-${var.environment}"
}
"""
APP_TEST = """def test_the_dsn_carries_the_password(outputs, dependency_outputs):
    password = dependency_outputs["vault"]["password"]
    assert outputs["dsn"] == f"postgres://app:{password}@{dependency_outputs['vault']['endpoint']}/app"
"""
LEAKY = """variable "vault" {
  type = object({
    password = string
  })
}

resource "terraform_data" "connection" {
  input = "postgres://app:${var.vault.password}@db/app"
}

output "dsn" {
  value = terraform_data.connection.output
}
"""
BLOCKS_TOML = """[defaults]
environment = "prod"

[blocks.vault]
description = "makes a secret"

[blocks.vault.versions."1.0.0"]

[blocks.app]
description = "uses it, sensitively"

[blocks.app.versions."1.0.0"]
requires = { vault = "~> 1.0" }

[blocks.leaky]
description = "uses it, carelessly"

[blocks.leaky.versions."1.0.0"]
requires = { vault = "~> 1.0" }

[environments.prod]
"""


def write_block(root: Path, name: str, body: str, tests: str | None = None) -> Path:
    directory = root / "blocks" / name / "1.0.0"
    directory.mkdir(parents=True)
    (directory / "versions.tf").write_text(VERSIONS)
    (directory / "variables.tf").write_text(COMMON_VARIABLES)
    (directory / "main.tf").write_text(body)
    if tests is not None:
        (directory / "tests").mkdir()
        (directory / "tests" / "test_block.py").write_text(tests)
    return directory


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "blocks.toml").write_text(BLOCKS_TOML)
    (root / "dodo.py").write_text(DODO)
    write_block(root, "vault", VAULT)
    write_block(root, "app", APP, tests=APP_TEST)
    write_block(root, "leaky", LEAKY)
    cloud_parent = Path(tempfile.mkdtemp(prefix="infrablocks-secrets-"))
    with DeployRepo(root, cloud_parent).closing() as deployment:
        yield deployment


def _ok(result) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_a_secret_never_leaves_the_state_folders(repo: DeployRepo, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    printed: list[str] = []

    def run(*args: str, expect: int = 0):
        result = repo.doit(*args)
        assert result.returncode == expect, \
            f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        printed.extend([result.stdout, result.stderr])
        return result

    run("create", "app", "--env", "prod", "--yes", "--report", str(reports / "create.json"))
    backend = repo.backend()
    secrets = [backend.read_outputs("prod", "vault").unmasked()["password"]]
    assert secrets[0].startswith("pw-") and len(secrets[0]) > 60
    assert backend.read_outputs("prod", "app").is_sensitive("dsn")

    # The working directory holds no secret; Terraform got it through TF_VAR_vault.
    workdir = repo.root / ".infrablocks" / "work" / "prod" / "app"
    inputs = json.loads((workdir / "_infrablocks_inputs.auto.tfvars.json").read_text())
    assert "vault" not in inputs and inputs["environment"] == "prod"
    private = repo.root / ".infrablocks" / "private" / "prod" / "app"
    assert json.loads((private / "inputs.json").read_text())["vault"]["password"] == secrets[0]
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "inputs.json").stat().st_mode) == 0o600

    run("create", "app", "--env", "prod")                       # unchanged
    run("plan", "app", "--env", "prod")
    run("plan", "app", "--env", "prod", "--json")
    run("status", "--env", "prod")
    status = run("status", "--env", "prod", "--json")
    assert {b["block"]: b["drift"] for b in json.loads(status.stdout)[0]["blocks"]} == {
        "app": "none", "vault": "none"}                        # plans run (with TF_VAR_vault)
    for block in ("vault", "app"):
        shown = run("outputs", block, "--env", "prod")
        assert "(sensitive)" in shown.stdout
        run("outputs", block, "--env", "prod", "--json")
    run("graph", "--env", "prod")
    run("graph", "--env", "prod", "--format", "json")

    # A throwaway environment, kept so that its own secret can be read, then destroyed.
    kept = run("env", "app", "--keep", "--report", str(reports / "env.json"))
    assert "block tests app 1.0.0: passed" in kept.stdout
    environment = json.loads((reports / "env.json").read_text())["environment"]
    secrets.append(backend.read_outputs(environment, "vault").unmasked()["password"])
    assert secrets[1] != secrets[0]
    assert not any((repo.root / ".infrablocks" / "private" / environment).rglob("outputs.json"))
    run("outputs", "app", "--env", environment, "--json")
    run("destroy", "vault", "--env", environment, "--with-dependents", "--yes",
        "--report", str(reports / "destroy-env.json"))

    # The careless dependent: reported by `doit check`, refused by `create` before applying.
    check = run("check", expect=2)
    problem = ('blocks/leaky/1.0.0/main.tf:1: leaky 1.0.0: variable "vault" receives the '
               'sensitive output password of vault 1.0.0 (declared sensitive) but is not '
               'declared sensitive: add `sensitive = true` to variable "vault"')
    assert problem in " ".join((check.stdout + check.stderr).split())
    refused = run("create", "leaky", "--env", "prod", expect=2)
    message = " ".join(refused.stderr.split())
    assert "refusing to apply: sensitive outputs would reach variables that are not " \
           "sensitive" in message
    assert problem.split(": ", 1)[1] in message
    assert backend.get_record("prod", "leaky") is None
    assert not list((repo.root / ".infrablocks" / "logs").rglob("*leaky*"))

    # Declared non-sensitive now by editing the deployed vault in place: the deployed code is
    # frozen (issue 9), so create refuses before anything is applied; the state's sensitivity
    # marks, checked per block before its apply, are covered by tests/unit/test_contracts.py.
    outputs_tf = repo.root / "blocks" / "vault" / "1.0.0" / "main.tf"
    outputs_tf.write_text(outputs_tf.read_text().replace("  sensitive = true\n", ""))
    refused = run("create", "leaky", "--env", "prod", "--yes", expect=1)
    message = " ".join((refused.stdout + refused.stderr).split())
    assert "refusing to apply edited code to prod: vault 1.0.0 (deployed in prod) was " \
           "edited: main.tf" in message
    assert backend.get_record("prod", "leaky") is None
    assert not list((repo.root / ".infrablocks" / "logs").rglob("*leaky-apply*"))
    outputs_tf.write_text(VAULT)

    run("destroy", "vault", "--env", "prod", "--with-dependents", "--yes",
        "--report", str(reports / "destroy.json"))
    assert not (repo.root / ".infrablocks" / "private" / "prod" / "app").exists()

    # Everything printed, every report, every file outside the state folders: no secret.
    for text in printed:
        for secret in secrets:
            assert secret not in text
    state_folders = [repo.root / ".infrablocks" / name for name in ("state", "private")]
    checked = []
    for path in [*(repo.root / ".infrablocks").rglob("*"), *reports.iterdir()]:
        if not path.is_file() or path.is_symlink() or any(
                path.is_relative_to(folder) for folder in state_folders):
            continue
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"a secret is in {path}"
        checked.append(path)
    assert len(checked) > 20
    for report in reports.iterdir():
        assert stat.S_IMODE(report.stat().st_mode) == 0o600, report

    # What a CI run uploads (`.infrablocks/logs/`, see ci/workflows): private and secret-free.
    logs = repo.root / ".infrablocks" / "logs"
    uploaded = [p for p in logs.rglob("*") if p.is_file()]
    assert any(re.search(r"prod-app-apply", p.name) for p in uploaded)
    for path in uploaded:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in [p for p in logs.rglob("*") if p.is_dir()]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    shutil.rmtree(reports)

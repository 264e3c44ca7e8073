"""`doit check` of the blocks' AWS modules: the same contract as the local module of the version
(variables with types, outputs, sensitivity). terraform validate itself runs in the tests marked
aws (tests/integration/test_aws_moto_platform.py)."""

from __future__ import annotations

from pathlib import Path

from infrablocks.platforms.aws_check import aws_module_check, contract_differences, modules_of
from infrablocks.registry import load_registry
from tests.support.registry_repo import make_repo, write_files

MAIN_REPO = Path(__file__).resolve().parents[2]

LOCAL = {
    "variables.tf": """
        variable "environment" { type = string }
        variable "base" {
          type = object({ endpoints = list(string), cluster_name = string })
        }
        variable "password" {
          type      = string
          sensitive = true
        }
        """,
    "outputs.tf": """
        output "url" { value = "x" }
        output "secret" {
          value     = "y"
          sensitive = true
        }
        """,
}


def module(root: Path, files: dict[str, str]) -> Path:
    write_files(root, files)
    return root


def test_the_example_blocks_aws_modules_keep_their_contracts() -> None:
    registry = load_registry(MAIN_REPO)
    found = {version.label: path for version, path in modules_of(registry)}
    assert {"base 1.0.0", "base 1.1.0", "nomad 1.0.0"} <= set(found)
    for version, path in modules_of(registry):
        assert contract_differences(version.path, path) == [], version.label


def test_every_difference_is_named(tmp_path) -> None:
    local = module(tmp_path / "local", LOCAL)
    aws = module(tmp_path / "aws", {
        "variables.tf": """
            variable "environment" { type = string }
            variable "base" {
              type = object({ endpoints = list(string) })
            }
            variable "password" { type = string }
            variable "region" { type = string }
            """,
        "outputs.tf": """
            output "secret" { value = "y" }
            output "extra" { value = 1 }
            """})
    assert contract_differences(local, aws) == [
        "variable 'region' is not in the local module",
        "variable 'base' has type object({endpoints=list(string)}), the local module "
        "object({endpoints=list(string),cluster_name=string})",
        "variable 'password': sensitive differs from the local module",
        "output 'url' is missing (the local module declares it)",
        "output 'extra' is not in the local module",
        "output 'secret': sensitive differs from the local module",
    ]
    assert contract_differences(local, module(tmp_path / "same", LOCAL)) == []


def test_doit_checks_validator_reports_an_aws_module_that_drifted(tmp_path) -> None:
    repo = make_repo(tmp_path / "repo", '[blocks.app.versions."1.0.0"]\n',
                     files={f"blocks/app/1.0.0/{name}": text for name, text in LOCAL.items()})
    outcome = aws_module_check(load_registry(repo))
    assert outcome.problems == [] and outcome.info == ["AWS modules: none"]
    write_files(repo, {"blocks/app/1.0.0/aws/variables.tf": LOCAL["variables.tf"],
                       "blocks/app/1.0.0/aws/outputs.tf": 'output "url" { value = "x" }\n'})
    outcome = aws_module_check(load_registry(repo))
    assert outcome.problems == ["blocks/app/1.0.0/aws: output 'secret' is missing (the local "
                                "module declares it)"]

"""The platform choice at the command line: blocks.toml's platform keys, --platform of the
commands that make throwaway environments, and `doit check` of the AWS modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

Doit = Callable[..., CompletedProcess[str]]

AWS = """
[platforms.aws]
region = "eu-west-1"
endpoint = "http://127.0.0.1:9"
"""


@pytest.mark.parametrize("args", [
    ("env", "base", "--platform", "awz"),
    ("test-create", "base", "--platform", "awz"),
    ("test-upgrade", "base", "--platform", "awz"),
    ("cloud", "--platform", "awz"),
])
def test_an_unknown_platform_is_named_with_the_declared_ones(example_repo: Path, doit: Doit,
                                                             args: tuple[str, ...]) -> None:
    (example_repo / "blocks.toml").write_text((example_repo / "blocks.toml").read_text() + AWS)
    result = doit(example_repo, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--platform: unknown platform 'awz'; did you mean 'aws'?" in result.stderr
    assert "platforms in blocks.toml: aws, local" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_platform_settings_are_named_by_every_command(example_repo: Path,
                                                          doit: Doit) -> None:
    toml = example_repo / "blocks.toml"
    toml.write_text(toml.read_text().replace("[environments.staging]",
                                             '[environments.staging]\nplatform = "aws"')
                    + '\n[platforms.aws]\nregion = "eu-west-1"\nsecret_key = "x"\n')
    for args in (("status",), ("create", "base", "--env", "staging")):
        result = doit(example_repo, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert ("platforms.aws.secret_key: credentials are never read from blocks.toml"
                in result.stderr)
        assert "Traceback" not in result.stderr
    checked = doit(example_repo, "check")
    assert checked.returncode == 2
    line = toml.read_text().splitlines().index('[platforms.aws]') + 1   # the table's line
    assert f"platforms: blocks.toml:{line}: platforms.aws.secret_key" in checked.stderr


def test_an_unknown_platform_of_an_environment_is_located(example_repo: Path,
                                                          doit: Doit) -> None:
    toml = example_repo / "blocks.toml"
    toml.write_text(toml.read_text().replace("[environments.staging]",
                                             '[environments.staging]\nplatform = "awz"'))
    line = toml.read_text().splitlines().index('platform = "awz"') + 1
    for args in (("check",), ("plan", "base", "--env", "staging"), ("status",)):
        result = doit(example_repo, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert (f"blocks.toml:{line}: environments.staging.platform: unknown platform 'awz'"
                in result.stderr), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_check_reports_an_aws_module_whose_contract_differs(example_repo: Path, doit: Doit,
                                                            write_repo) -> None:
    variables = (example_repo / "blocks/base/1.0.0/variables.tf").read_text()
    write_repo(example_repo, (example_repo / "blocks.toml").read_text(), files={
        "blocks/base/1.0.0/aws/variables.tf": variables + 'variable "region" { type = string }\n',
        "blocks/base/1.0.0/aws/outputs.tf": 'output "endpoints" { value = [] }\n'})
    result = doit(example_repo, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("aws-modules: blocks/base/1.0.0/aws: variable 'region' is not in the local module"
            in result.stderr)
    assert ("blocks/base/1.0.0/aws: output 'cluster_name' is missing (the local module "
            "declares it)") in result.stderr

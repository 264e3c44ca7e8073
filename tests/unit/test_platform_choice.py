"""Which platform each environment runs on (blocks.toml's platform keys, platforms.choice), the
AWS platform's settings, and the workspace's choice (declared, defaults, --platform, recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrablocks.cloud.aws.settings import AwsSettings, settings_problems
from infrablocks.deploy.workspace import open_workspace
from infrablocks.errors import ConfigError, InfrablocksError, UsageError
from infrablocks.platforms.aws import AwsPlatform
from infrablocks.platforms.choice import (
    PlatformProfile,
    check_recorded_platform,
    environment_platform,
    profile_problems,
    profiles,
    record_platform,
    recorded_platform,
)
from infrablocks.platforms.local import LocalPlatform
from infrablocks.registry import load_registry
from infrablocks.state.local import LocalBackend
from tests.support.registry_repo import make_repo

BLOCKS = """
[blocks.app.versions."1.0.0"]
"""


def registry(tmp_path: Path, toml: str):
    return load_registry(make_repo(tmp_path / "repo", BLOCKS + toml))


def test_local_is_always_there_and_needs_no_table(tmp_path):
    found = profiles(registry(tmp_path, ""))
    assert found == {"local": PlatformProfile("local", "local")}


def test_a_profile_named_after_a_kind_needs_no_kind(tmp_path):
    found = profiles(registry(tmp_path, """
[platforms.aws]
region = "eu-west-1"
profile = "infra"

[platforms.moto]
kind = "aws"
region = "us-east-1"
endpoint = "http://127.0.0.1:5000"
"""))
    assert found["aws"] == PlatformProfile("aws", "aws", {"region": "eu-west-1",
                                                          "profile": "infra"})
    assert found["moto"].kind == "aws" and "kind" not in found["moto"].settings
    assert found["moto"].describe() == "moto (aws)"


def test_every_problem_of_the_platform_keys_is_named_with_its_key(tmp_path):
    problems = profile_problems(registry(tmp_path, """
[defaults]
platform = "awz"

[platforms.cloud]
region = "eu-west-1"

[platforms.gcp]
kind = "gcp"

[platforms.aws]
region = "Ireland"
access_key = "AKIA..."
endpoint = "localhost:5000"
endpoints = { ec2 = "http://127.0.0.1:1", "EC 2" = "http://x" }
subnets = "10.0.0.0/25"
poll_interval = 0
colour = "blue"

[platforms.local]
kind = "aws"

[environments.prod]
platform = "mot"
"""))
    text = "\n".join(problems)
    assert "platforms.cloud.kind: missing (valid: aws, local)" in text
    assert "platforms.gcp.kind: unknown platform kind 'gcp'" in text
    assert "platforms.aws.region: 'Ireland' is not an AWS region" in text
    assert "platforms.aws.access_key: credentials are never read from blocks.toml" in text
    assert "platforms.aws.endpoint: 'localhost:5000' is not an http(s) URL" in text
    assert "platforms.aws.endpoints.EC 2: not a service id" in text
    assert "platforms.aws.subnets: '10.0.0.0/25' must be an IPv4 network of /24 or larger" in text
    assert "platforms.aws.poll_interval: must be a positive number" in text
    assert "platforms.aws.colour: unknown key" in text
    assert "platforms.local: the name 'local' is the built-in local cloud" in text
    assert "defaults.platform: unknown platform 'awz'; did you mean 'aws'?" in text
    assert "environments.prod.platform: unknown platform 'mot'" in text
    with pytest.raises(ConfigError) as raised:
        profiles(registry(tmp_path / "again", "[platforms.aws]\n"))
    assert raised.value.exit_code == 2
    assert any("platforms.aws.region: missing" in p for p in raised.value.problems)


def test_the_environment_platform_order(tmp_path):
    reg = registry(tmp_path, """
[defaults]
platform = "aws"

[platforms.aws]
region = "eu-west-1"

[platforms.moto]
kind = "aws"
region = "us-east-1"

[environments.prod]
platform = "local"

[environments.staging]
""")
    assert environment_platform(reg, "prod") == "local"             # its own key
    assert environment_platform(reg, "staging") == "aws"            # defaults.platform
    assert environment_platform(reg, None) == "aws"
    assert environment_platform(reg, "t-1a2b3c") == "aws"
    assert environment_platform(reg, "t-1a2b3c", chosen="moto") == "moto"    # --platform
    assert environment_platform(reg, "t-1a2b3c", recorded="local", chosen="moto") == "local"
    assert environment_platform(reg, "prod", chosen="moto") == "local"  # declared wins
    bare = registry(tmp_path / "bare", "")
    assert environment_platform(bare, "t-1a2b3c") == "local"


def test_a_deployment_remembers_its_platform_and_refuses_another(tmp_path):
    backend = LocalBackend(tmp_path / "state")
    moto = PlatformProfile("moto", "aws", {"region": "us-east-1"})
    assert recorded_platform(backend, "t-1") is None
    record_platform(backend, "t-1", "base", moto)
    assert recorded_platform(backend, "t-1") == "moto"
    check_recorded_platform(backend, "t-1", "base", moto)            # the same: fine
    check_recorded_platform(backend, "t-1", "app", PlatformProfile("local", "local"))  # new
    with pytest.raises(InfrablocksError) as raised:
        check_recorded_platform(backend, "t-1", "base", PlatformProfile("local", "local"))
    assert "base in t-1 is deployed on platform 'moto'" in str(raised.value)
    assert "destroy it there first" in raised.value.hint


def test_the_workspace_opens_each_environments_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALCLOUD_ROOT", str(tmp_path / "cloud"))
    repo = make_repo(tmp_path / "repo", BLOCKS + """
[platforms.aws]
region = "eu-west-1"
endpoint = "http://127.0.0.1:9"

[environments.prod]
platform = "aws"

[environments.staging]
""")
    workspace = open_workspace(repo)
    prod = workspace.platform("prod")
    assert isinstance(prod, AwsPlatform) and prod is workspace.platform("prod")
    assert isinstance(workspace.platform("staging"), LocalPlatform)
    assert isinstance(workspace.platform(None), LocalPlatform)
    assert workspace.platform_profile("prod").name == "aws"
    with pytest.raises(UsageError) as raised:
        workspace.choose_platform("amz")
    assert "--platform: unknown platform 'amz'" in str(raised.value)
    workspace.choose_platform("aws")
    assert isinstance(workspace.platform("t-abcdef"), AwsPlatform)
    # a throwaway environment keeps the platform its deployments recorded
    record_platform(workspace.backend, "t-000001", "app", PlatformProfile("local", "local"))
    assert isinstance(workspace.platform("t-000001"), LocalPlatform)


def test_bad_platform_settings_stop_the_workspace_with_every_problem(tmp_path):
    repo = make_repo(tmp_path / "repo", BLOCKS + '[environments.prod]\nplatform = "aws"\n')
    with pytest.raises(ConfigError) as raised:
        open_workspace(repo)
    assert "environments.prod.platform: unknown platform 'aws'" in "\n".join(
        raised.value.problems)


# -- the AWS settings ------------------------------------------------------------------------------

def test_aws_settings_become_the_sdks_variables_never_credentials():
    settings = AwsSettings.from_table({
        "region": "eu-west-1", "profile": "infra", "endpoint": "http://127.0.0.1:5000",
        "endpoints": {"ec2": "http://127.0.0.1:5001", "sts": "http://127.0.0.1:5002"}})
    assert settings.environment() == {
        "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_PROFILE": "infra",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:5001",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5002"}
    assert settings.endpoint_for("ec2") == "http://127.0.0.1:5001"
    assert settings.endpoint_for("s3") == "http://127.0.0.1:5000"
    assert settings.emulated
    plain = AwsSettings.from_table({"region": "eu-west-1"})
    assert plain.environment() == {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert not plain.emulated and plain.describe() == "aws eu-west-1"


def test_the_aws_platform_hands_terraform_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-copy")
    platform = AwsPlatform.open(tmp_path, region="eu-west-1")
    assert platform.terraform_env() == {"AWS_REGION": "eu-west-1",
                                        "AWS_DEFAULT_REGION": "eu-west-1"}
    assert "do-not-copy" not in repr(platform)


def test_the_aws_module_of_a_block_version_is_its_aws_folder(tmp_path):
    platform = AwsPlatform.open(tmp_path, region="eu-west-1")
    version = tmp_path / "blocks" / "app" / "1.0.0"
    version.mkdir(parents=True)
    with pytest.raises(ConfigError) as raised:
        platform.block_module(version)
    assert "blocks/app/1.0.0 has no AWS module (blocks/app/1.0.0/aws/ does not exist)" in str(
        raised.value)
    (version / "aws").mkdir()
    assert platform.block_module(version) == version / "aws"


def test_settings_problems_accept_a_complete_table():
    assert settings_problems({"region": "ap-southeast-2", "profile": "p", "vpc_id": "vpc-0a1",
                              "subnets": "10.42.0.0/16", "poll_interval": 2.5,
                              "endpoints": {"ec2": "https://ec2.example"}}, "x") == []

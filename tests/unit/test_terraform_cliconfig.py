"""The tool's Terraform CLI config: mirror for the local cloud, shared plugin cache."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infrablocks.terraform.cliconfig import CliConfigPaths, render_cli_config, write_cli_config

TERRAFORM = Path(sys.executable).parent / "terraform"


@pytest.fixture
def area(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_rendered_config_routes_the_local_provider_to_the_mirror():
    text = render_cli_config(Path("/m"), Path("/cache"))
    assert 'plugin_cache_dir = "/cache"' in text
    assert ('filesystem_mirror {\n    path    = "/m"\n    include = ["infrablocks.local/*/*"]'
            in text)
    assert 'direct {\n    exclude = ["infrablocks.local/*/*"]' in text


def test_paths_are_escaped():
    text = render_cli_config(Path('/a "b"/${c}'), Path("/cache"))
    assert 'path    = "/a \\"b\\"/$${c}"' in text


def test_write_creates_the_directories_and_is_idempotent(area):
    paths = CliConfigPaths.under(area / "terraform")
    config = write_cli_config(paths, populate_mirror=False)
    assert config == area / "terraform/terraform.rc"
    assert paths.mirror_dir.is_dir() and paths.plugin_cache_dir.is_dir()
    before = config.stat().st_mtime_ns
    write_cli_config(paths, populate_mirror=False)
    assert config.stat().st_mtime_ns == before
    assert [p.name for p in config.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_terraform_reads_the_config_without_complaint(area):
    """Real Terraform: an init with the generated config reports no CLI-config problem."""
    config = write_cli_config(CliConfigPaths.under(area / "terraform"), populate_mirror=False)
    module = area / "module"
    module.mkdir()
    (module / "main.tf").write_text('resource "terraform_data" "a" {}\n')
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1"}
    done = subprocess.run([str(TERRAFORM), "init", "-no-color", "-input=false"], cwd=module,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "problems with the CLI configuration" not in done.stdout + done.stderr


# -- providers other than the local cloud's: mirrors, the user's CLI config ---------------------

from infrablocks.errors import ConfigError  # noqa: E402
from infrablocks.terraform.cliconfig import (  # noqa: E402
    DIRECT,
    InstallationMethod,
    mirror_providers,
    provider_methods,
    repo_mirror_folders,
    user_cli_config,
)

AWS = "registry.terraform.io/hashicorp/aws"


def unpacked(folder: Path, provider: str = AWS, version: str = "5.100.0") -> Path:
    binary = folder / provider / version / "linux_amd64" / f"terraform-provider-aws_v{version}"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    return folder


def test_mirror_providers_reads_both_layouts(tmp_path):
    unpacked(tmp_path / "m")
    packed = tmp_path / "m" / "registry.terraform.io" / "hashicorp" / "random"
    packed.mkdir(parents=True)
    (packed / "terraform-provider-random_3.6.0_linux_amd64.zip").write_bytes(b"PK")
    (tmp_path / "m" / "registry.terraform.io" / "hashicorp" / "empty").mkdir()
    assert mirror_providers(tmp_path / "m") == [AWS, "registry.terraform.io/hashicorp/random"]


def test_a_repo_mirror_serves_what_it_holds_and_the_registry_the_rest(tmp_path):
    mirror = unpacked(tmp_path / "mirror")
    methods = provider_methods([mirror], {"HOME": str(tmp_path / "home"),
                                          "TF_CLI_CONFIG_FILE": str(tmp_path / "missing.rc")})
    assert [(m.kind, m.include, m.exclude) for m in methods] == [
        ("filesystem_mirror", (AWS,), ()), ("direct", (), (AWS,))]
    text = render_cli_config(Path("/local"), Path("/cache"), methods)
    assert (f'filesystem_mirror {{\n    path    = "{mirror.resolve()}"\n'
            f'    include = ["{AWS}"]\n    exclude = ["infrablocks.local/*/*"]') in text
    assert f'direct {{\n    exclude = ["{AWS}", "infrablocks.local/*/*"]' in text


def test_without_a_cli_config_terraforms_implied_mirrors_count(tmp_path):
    home = tmp_path / "home"
    unpacked(home / ".terraform.d" / "plugins")
    environ = {"HOME": str(home), "XDG_DATA_DIRS": str(tmp_path / "none")}
    assert user_cli_config(environ) is None
    methods = provider_methods([], environ)
    assert methods[0] == InstallationMethod("filesystem_mirror",
                                            str(home / ".terraform.d" / "plugins"),
                                            include=(AWS,))
    assert methods[0].source == "Terraform's implied mirror"
    assert methods[1] == InstallationMethod("direct", exclude=(AWS,))
    assert provider_methods([], {"HOME": str(tmp_path / "nobody"),
                                 "XDG_DATA_DIRS": str(tmp_path / "none")}) == [DIRECT]


def test_the_users_provider_installation_is_carried_over(tmp_path):
    config = tmp_path / "user.rc"
    config.write_text(textwrap.dedent("""\
        plugin_cache_dir = "/somewhere"
        credentials "app.terraform.io" { token = "secret-token" }
        provider_installation {
          network_mirror {
            url     = "https://mirror.example/providers/"
            include = ["registry.terraform.io/*/*"]
          }
          direct {
            exclude = ["registry.terraform.io/*/*"]
          }
        }
        """))
    mirror = unpacked(tmp_path / "repo-mirror")
    methods = provider_methods([mirror], {"TF_CLI_CONFIG_FILE": str(config)})
    assert [(m.kind, m.location, m.include, m.exclude) for m in methods] == [
        ("filesystem_mirror", str(mirror.resolve()), (AWS,), ()),
        ("network_mirror", "https://mirror.example/providers/", ("registry.terraform.io/*/*",),
         (AWS,)),
        ("direct", "", (), ("registry.terraform.io/*/*", AWS))]
    text = render_cli_config(Path("/local"), Path("/cache"), methods)
    assert "secret-token" not in text and "/somewhere" not in text
    assert 'url     = "https://mirror.example/providers/"' in text


def test_a_cli_config_named_but_missing_is_no_config(tmp_path):
    assert user_cli_config({"TF_CLI_CONFIG_FILE": str(tmp_path / "nope.rc"),
                            "HOME": str(tmp_path)}) is None
    (tmp_path / ".terraformrc").write_text("")
    assert user_cli_config({"HOME": str(tmp_path)}) == tmp_path / ".terraformrc"


def test_repo_mirrors_are_folders_relative_to_the_repository(tmp_path):
    assert repo_mirror_folders({"mirrors": ["tf/mirror", "/opt/x"]}, tmp_path) == [
        (tmp_path / "tf" / "mirror").resolve(), Path("/opt/x")]
    assert repo_mirror_folders({}, tmp_path) == []
    with pytest.raises(ConfigError) as raised:
        repo_mirror_folders({"mirrors": "/opt/x"}, tmp_path)
    assert "terraform.mirrors must be a list of folders" in str(raised.value)


def test_terraform_installs_a_provider_from_a_repo_mirror_offline(area):
    """Real `terraform init` against a mirror holding a stand-in provider package: it is
    installed from the mirror and the registry is never asked (it is excluded)."""
    mirror = area / "mirror"
    package = mirror / "example.test" / "acme" / "thing" / "1.2.3" / "linux_amd64"
    package.mkdir(parents=True)
    (package / "terraform-provider-thing_v1.2.3").write_text("#!/bin/sh\nexit 1\n")
    (package / "terraform-provider-thing_v1.2.3").chmod(0o755)
    paths = CliConfigPaths.under(area / "terraform")
    config = write_cli_config(paths, populate_mirror=False,
                              methods=provider_methods([mirror], {"HOME": str(area)}))
    module = area / "module"
    module.mkdir()
    (module / "main.tf").write_text(
        'terraform {\n  required_providers {\n'
        '    thing = { source = "example.test/acme/thing", version = "1.2.3" }\n  }\n}\n')
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1"}
    done = subprocess.run([str(TERRAFORM), "init", "-input=false", "-no-color"], cwd=module,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Installed example.test/acme/thing v1.2.3" in done.stdout

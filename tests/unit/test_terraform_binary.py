"""Choosing the Terraform executable: env var, blocks.toml setting, bundled default."""

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from infrablocks.errors import ConfigError
from infrablocks.terraform.binary import (
    BUNDLED,
    ENV_VAR,
    SETTING,
    bundled_terraform,
    find_terraform,
    probe_terraform,
)

BUNDLED_PATH = Path(sys.executable).parent / "terraform"


@pytest.fixture
def bin_dir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def script(directory: Path, name: str, body: str) -> Path:
    """An executable that is not Terraform: inputs for the refusal paths."""
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_bundled_terraform_is_next_to_the_interpreter_and_answers_its_version():
    assert bundled_terraform() == BUNDLED_PATH
    found = find_terraform(environ={})
    assert found.path == BUNDLED_PATH and found.source == BUNDLED
    assert found.flavor == "Terraform" and found.version.startswith("1.")
    assert found.version in found.describe()


def test_env_var_wins_over_the_setting(bin_dir):
    link = bin_dir / "my-terraform"
    link.symlink_to(BUNDLED_PATH)
    found = find_terraform("does-not-matter", environ={ENV_VAR: str(link), "PATH": ""})
    assert found.path == link and found.source == ENV_VAR


def test_setting_can_be_a_command_on_path_or_a_path_relative_to_the_repo(bin_dir):
    found = find_terraform("terraform", environ={"PATH": str(BUNDLED_PATH.parent)})
    assert found.path == BUNDLED_PATH and found.source == SETTING
    (bin_dir / "tools").mkdir()
    (bin_dir / "tools/tofu").symlink_to(BUNDLED_PATH)
    found = find_terraform("tools/tofu", base_dir=bin_dir, environ={})
    assert found.path == bin_dir / "tools/tofu"
    assert found.flavor == "OpenTofu"  # named tofu; the bundled Terraform answers its version


def test_missing_or_unusable_executables_are_clear_config_errors(bin_dir):
    with pytest.raises(ConfigError, match=f"{ENV_VAR}: .*/nope does not exist"):
        find_terraform(environ={ENV_VAR: str(bin_dir / "nope")})
    with pytest.raises(ConfigError, match="'tofu-x' is not a command on PATH"):
        find_terraform("tofu-x", environ={"PATH": str(bin_dir)})
    with pytest.raises(ConfigError, match="is not an executable file"):
        find_terraform(str(bin_dir), environ={})
    plain = bin_dir / "plain"
    plain.write_text("not executable")
    with pytest.raises(ConfigError, match="is not an executable file"):
        find_terraform(str(plain), environ={})


def test_a_program_that_is_not_terraform_is_refused(bin_dir):
    other = script(bin_dir, "terraform", "echo 'usage: something else' >&2; exit 64")
    with pytest.raises(ConfigError, match="is not Terraform or OpenTofu.*exited 64.*usage") as e:
        probe_terraform(other, SETTING)
    assert e.value.exit_code == 2
    silent = script(bin_dir, "terraform2", "echo hello")
    with pytest.raises(ConfigError, match="is not Terraform or OpenTofu"):
        probe_terraform(silent, SETTING)


def test_a_terraform_that_is_not_1x_is_refused(bin_dir):
    old = script(bin_dir, "terraform", "echo '{\"terraform_version\": \"0.12.31\"}'")
    with pytest.raises(ConfigError, match="is Terraform 0.12.31; infrablocks needs .* 1.x"):
        probe_terraform(old, ENV_VAR)


def test_the_probe_does_not_read_the_users_cli_config(bin_dir, monkeypatch):
    # This machine's TF_CLI_CONFIG_FILE may name a missing file; the probe must not pass it on.
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(bin_dir / "missing.rc"))
    seen = bin_dir / "seen"
    probe = script(bin_dir, "terraform", f'echo "$TF_CLI_CONFIG_FILE" > {seen}\n'
                                         "echo '{\"terraform_version\": \"1.9.0\"}'")
    assert probe_terraform(probe, SETTING).version == "1.9.0"
    assert seen.read_text().strip() == os.devnull


def test_an_opentofu_version_key_is_understood(bin_dir):
    tofu = script(bin_dir, "my-iac", "echo '{\"opentofu_version\": \"1.8.2\"}'")
    found = probe_terraform(tofu, ENV_VAR)
    assert (found.flavor, found.version) == ("OpenTofu", "1.8.2")

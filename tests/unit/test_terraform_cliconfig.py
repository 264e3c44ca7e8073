"""The tool's Terraform CLI config: mirror for the local cloud, shared plugin cache."""

import os
import shutil
import subprocess
import sys
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

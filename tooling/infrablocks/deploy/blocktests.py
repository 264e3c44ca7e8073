"""Running a block version's own tests against a deployment: ``blocks/NAME/VERSION/tests`` (the
``tests`` folder of the block's module on the environment's platform: ``VERSION/aws/tests`` on
AWS), with the platform's environment (``Platform.terraform_env``, ``INFRABLOCKS_PLATFORM``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion


@dataclass(frozen=True)
class BlockTestResult:
    block: str
    version: str
    returncode: int           # pytest's: 0 passed, 1 failed, 5 no tests, ...
    summary: str              # pytest's closing line
    log_path: Path | None
    seconds: float = 0.0      # wall time of the pytest run

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def skipped(self) -> bool:
        return self.returncode == 5


def run_block_tests(workspace: Workspace, environment: str, version: BlockVersion, *,
                    echo: bool = True) -> BlockTestResult:
    """Run pytest on the block version's tests with its (and its dependencies') outputs.

    The outputs, sensitive ones included, go to files in the deployment's private directory
    (``.infrablocks/private/ENV/BLOCK/block-tests/``, 0700/0600: one of the state folders,
    never uploaded) and are removed after the run. pytest's output is shown as it runs (like
    pytest does) and kept in a log beside them: a failing assertion may print an output's value,
    so that log is private too (its path is in the result).
    """
    from infrablocks.private_files import open_private, private_dir
    from infrablocks.terraform.workdir import private_root_for, workdir_path

    platform = workspace.platform(environment)
    tests = platform.block_module(version.path) / "tests"
    if not tests.is_dir():
        return BlockTestResult(version.block, str(version.version), 5,
                               f"no tests folder in {tests}", None)
    root = private_root_for(workspace.work_root)
    files = private_dir(workdir_path(root, environment, version.block) / "block-tests",
                        base=root.parent)
    backend = workspace.backend
    outputs = backend.read_outputs(environment, version.block).unmasked()
    dependencies = {dep: backend.read_outputs(environment, dep).unmasked()
                    for dep in sorted(version.requires)}
    outputs_file = _private_json(files / "outputs.json", outputs)
    dependencies_file = _private_json(files / "dependency_outputs.json", dependencies)
    env = {**os.environ, **platform.terraform_env(), "INFRABLOCKS_PLATFORM": platform.name,
           "INFRABLOCKS_BLOCK_OUTPUTS": str(outputs_file),
           "INFRABLOCKS_DEPENDENCY_OUTPUTS": str(dependencies_file),
           "INFRABLOCKS_ENVIRONMENT": environment}
    log_path = files / "pytest.log"
    command = [sys.executable, "-m", "pytest", "-p", "infrablocks.blocktests",
               "-p", "no:cacheprovider", "--rootdir", str(tests), "-q", "-rA", str(tests)]
    lines: list[str] = []
    started = time.monotonic()
    try:
        with open_private(log_path, "w") as log, subprocess.Popen(
                command, cwd=files, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True) as process:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                lines.append(line.rstrip("\n"))
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
    finally:
        outputs_file.unlink(missing_ok=True)
        dependencies_file.unlink(missing_ok=True)
    summary = next((line.strip("= ") for line in reversed(lines) if line.strip()), "")
    return BlockTestResult(version.block, str(version.version), process.returncode, summary,
                           log_path, round(time.monotonic() - started, 3))


def _private_json(path: Path, data: object) -> Path:
    from infrablocks.private_files import write_private_text

    write_private_text(path, json.dumps(data))
    return path

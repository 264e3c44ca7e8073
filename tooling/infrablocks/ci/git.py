"""The git side of ``doit affected``: which files changed between two states of the repository,
and reading a file or a directory listing as it is in one of them.

A state is a commit (any ref git understands) or ``None`` for the working tree, which includes
uncommitted and untracked (not ignored) files: locally, users expect their edits to count.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from infrablocks.errors import InfrablocksError, UsageError

DEFAULT_BRANCH_CANDIDATES = ("main", "master")


@dataclass(frozen=True)
class ChangedFile:
    path: str                       # path at head (for a deletion: the deleted path)
    status: str                     # "added" | "modified" | "deleted" | "renamed"
    old_path: str | None = None     # for a rename: the path at base


def git(repo_root: Path, *args: str, check: bool = True) -> str:
    try:
        run = subprocess.run(["git", "-C", str(repo_root), *args], capture_output=True,
                             text=True, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InfrablocksError("git is not installed (needed to find what changed)") from None
    if check and run.returncode != 0:
        raise InfrablocksError(f"git {' '.join(args)} failed: {run.stderr.strip()}")
    return run.stdout


def resolve_ref(repo_root: Path, ref: str) -> str:
    """The commit id of ``ref``; a UsageError names the ref when git does not know it."""
    out = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "--verify", "--quiet",
                          f"{ref}^{{commit}}"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise UsageError(f"git does not know the revision {ref!r}",
                         hint="give a branch, tag or commit (in CI fetch the history: "
                              "actions/checkout with fetch-depth: 0)")
    return out.stdout.strip()


def default_branch(repo_root: Path) -> str:
    """``origin/HEAD``'s branch when a remote says so, else ``main`` or ``master``."""
    symbolic = git(repo_root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD",
                   check=False).strip()
    if symbolic:
        return symbolic
    for name in DEFAULT_BRANCH_CANDIDATES:
        for candidate in (f"origin/{name}", name):
            if git(repo_root, "rev-parse", "--verify", "--quiet", candidate, check=False).strip():
                return candidate
    raise UsageError("cannot tell the default branch (no origin/HEAD, main or master)",
                     hint="name the base of the comparison: --base REF")


def default_base(repo_root: Path, head: str | None) -> str:
    """The merge base of ``head`` (default HEAD) with the default branch."""
    branch = default_branch(repo_root)
    base = git(repo_root, "merge-base", branch, head or "HEAD", check=False).strip()
    if not base:
        raise UsageError(f"{head or 'HEAD'} has no common history with {branch}",
                         hint="name the base of the comparison: --base REF")
    return base


def changed_files(repo_root: Path, base: str, head: str | None) -> list[ChangedFile]:
    """Files that differ between ``base`` and ``head`` (None: the working tree, untracked files
    included), renames detected."""
    args = ["diff", "--name-status", "-z", "-M", base]
    if head is not None:
        args.append(head)
    fields = git(repo_root, *args).split("\0")
    changes: list[ChangedFile] = []
    index = 0
    while index < len(fields) and fields[index]:
        code = fields[index]
        if code.startswith(("R", "C")):
            old, new = fields[index + 1], fields[index + 2]
            changes.append(ChangedFile(new, "renamed" if code[0] == "R" else "added", old))
            index += 3
            continue
        path = fields[index + 1]
        status = {"A": "added", "D": "deleted"}.get(code[0], "modified")
        changes.append(ChangedFile(path, status))
        index += 2
    if head is None:
        untracked = git(repo_root, "ls-files", "--others", "--exclude-standard", "-z")
        known = {c.path for c in changes}
        changes += [ChangedFile(p, "added") for p in untracked.split("\0") if p and p not in known]
    return sorted(changes, key=lambda c: c.path)


class Tree:
    """The repository's files as they are in one state (a commit, or the working tree)."""

    def __init__(self, repo_root: Path, ref: str | None) -> None:
        self.root = repo_root
        self.ref = ref

    def read(self, path: str) -> str | None:
        if self.ref is None:
            try:
                return (self.root / path).read_text(encoding="utf-8")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                    UnicodeDecodeError):
                return None
        run = subprocess.run(["git", "-C", str(self.root), "show", f"{self.ref}:{path}"],
                             capture_output=True, check=False)
        if run.returncode != 0:
            return None
        return run.stdout.decode("utf-8", errors="replace")

    def files_under(self, directory: str) -> list[str]:
        """Paths (relative to the repository) of the files below ``directory``."""
        directory = directory.rstrip("/")
        if self.ref is None:
            base = self.root / directory
            if not base.is_dir():
                return []
            return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())
        out = git(self.root, "ls-tree", "-r", "--name-only", "-z", self.ref, "--",
                  f"{directory}/", check=False)
        return sorted(p for p in out.split("\0") if p)

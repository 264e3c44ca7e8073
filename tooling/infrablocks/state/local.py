"""The local state backend: a private directory tree, ``ROOT/ENV/BLOCK/terraform.tfstate``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from infrablocks.private_files import private_dir, touch_private_file, write_private_file
from infrablocks.state.backends import (
    LOCK_NAME,
    STATE_FILE,
    BlobStateBackend,
    check_name,
)
from infrablocks.state.locks import Lock, LockInfo, acquire_file_lock, read_file_lock_holder
from infrablocks.state.spec import BackendSpec

# Terraform writes the previous state here on every change; it holds the same secrets.
BACKUP_FILE = STATE_FILE + ".backup"


class LocalBackend(BlobStateBackend):
    """State in ``root`` (by default ``<repo>/.infrablocks/state``): 0700 dirs, 0600 files."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def deployment_dir(self, environment: str, block: str) -> Path:
        return self.root / check_name("environment", environment) / check_name("block", block)

    def _private_deployment_dir(self, environment: str, block: str) -> Path:
        """The deployment's directory, it and its parents up to the root made 0700."""
        directory = self.deployment_dir(environment, block)
        for level in (self.root, directory.parent, directory):
            private_dir(level)
        return directory

    def terraform_backend(self, environment: str, block: str, *,
                          create: bool = True) -> BackendSpec:
        """``local`` backend with an absolute path; creates the state (and backup) file 0600.

        Terraform rewrites an existing state file in place, keeping its mode, but would create
        a missing one (and its ``.backup``) world-readable under the usual umask. With
        ``create=False`` nothing is created (for read-only plans: the same path, no side effect).
        """
        if not create:
            path = self.deployment_dir(environment, block) / STATE_FILE
            return BackendSpec("local", {"path": str(path.resolve())})
        directory = self._private_deployment_dir(environment, block)
        for name in (STATE_FILE, BACKUP_FILE):
            touch_private_file(directory / name)
        return BackendSpec("local", {"path": str((directory / STATE_FILE).resolve())})

    def list_environments(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and self._has_blocks(p))

    def list_blocks(self, environment: str) -> list[str]:
        env_dir = self.root / check_name("environment", environment)
        if not env_dir.is_dir():
            return []
        return sorted(p.name for p in env_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and holds_deployment(p))

    def purge(self, environment: str, block: str) -> None:
        directory = self.deployment_dir(environment, block)
        if not directory.is_dir():
            return
        for entry in directory.iterdir():
            if entry.name.startswith(LOCK_NAME):
                continue  # a concurrent holder keeps its lock; the files are tiny
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        if not any(directory.iterdir()):
            directory.rmdir()
        env_dir = directory.parent
        if env_dir.is_dir() and not any(env_dir.iterdir()):
            env_dir.rmdir()

    def forget_environment(self, environment: str) -> None:
        """Remove the environment's deployment directories that hold nothing but an unheld
        lock (``purge`` keeps a lock for a concurrent holder), then the empty environment
        directory. A lock is removed only while this process holds it (``flock``, never
        waiting): a held one, and any directory with state, a record or documents, stays."""
        import contextlib
        import fcntl

        env_dir = self.root / check_name("environment", environment)
        if not env_dir.is_dir():
            return
        for directory in env_dir.iterdir():
            if not directory.is_dir() or holds_deployment(directory):
                continue
            names = {entry.name for entry in directory.iterdir()}
            if not names <= {LOCK_NAME, LOCK_NAME + ".json"}:
                continue
            lock_path = directory / LOCK_NAME
            if not lock_path.exists():
                lock_path.parent.joinpath(LOCK_NAME + ".json").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    directory.rmdir()
                continue
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue   # held: its holder is at work
                (directory / (LOCK_NAME + ".json")).unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    directory.rmdir()
            finally:
                os.close(fd)
        with contextlib.suppress(OSError):
            env_dir.rmdir()   # only when empty

    # -- locks ------------------------------------------------------------------------------

    def acquire_lock(self, environment: str, block: str, operation: str, *,
                     wait: float = 0.0) -> Lock:
        directory = self._private_deployment_dir(environment, block)
        info = LockInfo.for_this_process(environment, block, operation)
        return acquire_file_lock(directory / LOCK_NAME, info, wait=wait)

    def lock_holder(self, environment: str, block: str) -> LockInfo | None:
        return read_file_lock_holder(self.deployment_dir(environment, block) / LOCK_NAME)

    # -- blobs ------------------------------------------------------------------------------

    def _path(self, environment: str, block: str, name: str) -> Path:
        return self.deployment_dir(environment, block) / name

    def _get(self, environment: str, block: str, name: str) -> bytes | None:
        try:
            return self._path(environment, block, name).read_bytes()
        except FileNotFoundError:
            return None

    def _put(self, environment: str, block: str, name: str, data: bytes) -> None:
        path = self._path(environment, block, name)
        self._private_deployment_dir(environment, block)
        private_dir(path.parent)
        write_private_file(path, data)

    def _delete(self, environment: str, block: str, name: str) -> bool:
        try:
            self._path(environment, block, name).unlink()
        except FileNotFoundError:
            return False
        return True

    def _where(self, environment: str, block: str, name: str) -> str:
        return os.fspath(self._path(environment, block, name))

    def _has_blocks(self, env_dir: Path) -> bool:
        return any(p.is_dir() and holds_deployment(p) for p in env_dir.iterdir())


def holds_deployment(deployment_dir: Path) -> bool:
    """A block counts as stored when it has state (non-empty), a record or documents."""
    state = deployment_dir / STATE_FILE
    if state.is_file() and state.stat().st_size > 0:
        return True
    if (deployment_dir / "deployment.json").is_file():
        return True
    documents = deployment_dir / "documents"
    return documents.is_dir() and any(documents.iterdir())

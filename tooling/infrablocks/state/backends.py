"""State backends: where each (environment, block) keeps its Terraform state and, beside it, its
deployment record, documents (e.g. the rolling-upgrade journal) and lock.

Two implementations, chosen by blocks.toml ``[state]`` through
:func:`infrablocks.state.settings.backend_from_settings`:

- ``local`` (:class:`~infrablocks.state.local.LocalBackend`, the default):
  ``<path>/ENV/BLOCK/terraform.tfstate``, directories 0700, files 0600;
- ``s3`` (:class:`~infrablocks.state.s3.S3Backend`): Terraform's built-in ``s3`` backend with
  ``use_lockfile = true``; records and documents are objects beside the state object.

Layout of one deployment (the same names in a directory or under an S3 key prefix)::

    ENV/BLOCK/terraform.tfstate       Terraform's state (written by Terraform only)
    ENV/BLOCK/deployment.json         the DeploymentRecord
    ENV/BLOCK/documents/NAME.json     documents (put_document/get_document)
    ENV/BLOCK/infrablocks.lock[.json] the infrablocks lock (local) / infrablocks.lock object (s3)

Reading state never runs Terraform: the tfstate JSON is read directly (a file read or one S3
GET), which is what makes wiring a dependent's inputs from its dependencies' outputs cheap.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.state.locks import Lock, LockInfo
from infrablocks.state.outputs import Outputs
from infrablocks.state.records import DeploymentRecord
from infrablocks.state.spec import BackendSpec

STATE_FILE = "terraform.tfstate"
RECORD_FILE = "deployment.json"
DOCUMENTS_DIR = "documents"
LOCK_NAME = "infrablocks.lock"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@runtime_checkable
class StateBackend(Protocol):
    """What the commands use to find, read and annotate deployments' state."""

    kind: str

    def terraform_backend(self, environment: str, block: str, *,
                          create: bool = True) -> BackendSpec:
        """The backend block for ``prepare_workdir`` (creates what must exist beforehand;
        ``create=False``: the same settings, creating nothing — for read-only plans)."""

    def describe(self, environment: str, block: str) -> str:
        """Where the state is, for people (a path or an ``s3://`` URL)."""

    def read_state(self, environment: str, block: str) -> dict[str, Any] | None:
        """The tfstate JSON, or None when the block has no state in the environment."""

    def read_outputs(self, environment: str, block: str) -> Outputs:
        """The outputs recorded in the state (empty when there is no state)."""

    def put_record(self, record: DeploymentRecord) -> None: ...

    def get_record(self, environment: str, block: str) -> DeploymentRecord | None: ...

    def list_records(self, environment: str) -> list[DeploymentRecord]:
        """Records of every block in the environment, sorted by block name."""

    def delete_record(self, environment: str, block: str) -> bool: ...

    def put_document(self, environment: str, block: str, name: str,
                     data: dict[str, Any]) -> None: ...

    def get_document(self, environment: str, block: str, name: str) -> dict[str, Any] | None: ...

    def delete_document(self, environment: str, block: str, name: str) -> bool: ...

    def list_environments(self) -> list[str]:
        """Environments with anything stored (state, record, document), sorted."""

    def list_blocks(self, environment: str) -> list[str]:
        """Blocks with anything stored in the environment, sorted."""

    def purge(self, environment: str, block: str) -> None:
        """Forget a deployment: state, backups, record, documents (not a held lock).

        Only after a successful destroy — the state is the only link to what exists.
        """

    def forget_environment(self, environment: str) -> None:
        """After its last deployment was purged: remove what is left of the environment that
        holds nothing (the local backend's unheld lock files and empty directories)."""

    def acquire_lock(self, environment: str, block: str, operation: str, *,
                     wait: float = 0.0) -> Lock:
        """Lock (environment, block) for ``operation``; :class:`LockHeldError` if held."""

    def lock_holder(self, environment: str, block: str) -> LockInfo | None:
        """Who holds the lock now, or None."""


def check_name(what: str, name: str) -> str:
    """Environment, block and document names become path segments / key parts: keep them plain."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UsageError(f"invalid {what} name {name!r}",
                         hint="use letters, digits, '_', '-' and '.', starting with a letter "
                              "or digit")
    return name


class BlobStateBackend(ABC):
    """Records, documents, state reading and listing over a handful of blob operations.

    A subclass stores bytes under ``(environment, block, relative name)`` and implements the
    Terraform-facing and locking parts.
    """

    kind: str = ""

    # -- storage primitives -----------------------------------------------------------------

    @abstractmethod
    def _get(self, environment: str, block: str, name: str) -> bytes | None: ...

    @abstractmethod
    def _put(self, environment: str, block: str, name: str, data: bytes) -> None: ...

    @abstractmethod
    def _delete(self, environment: str, block: str, name: str) -> bool: ...

    @abstractmethod
    def _where(self, environment: str, block: str, name: str) -> str:
        """Human-readable location of one stored object."""

    @abstractmethod
    def list_blocks(self, environment: str) -> list[str]:
        """The blocks with something stored in ``environment`` (state, record or documents)."""

    def forget_environment(self, environment: str) -> None:
        """Nothing beyond :meth:`purge` is left in a blob store (a lock is an object its
        holder deletes on release)."""
        return None

    # -- Terraform state ------------------------------------------------------------------------

    def describe(self, environment: str, block: str) -> str:
        return self._where(environment, block, STATE_FILE)

    def read_state(self, environment: str, block: str) -> dict[str, Any] | None:
        check_name("environment", environment)
        check_name("block", block)
        raw = self._get(environment, block, STATE_FILE)
        if raw is None or not raw.strip():
            return None
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise InfrablocksError(
                f"state of block {block!r} in environment {environment!r} is not valid JSON "
                f"({self._where(environment, block, STATE_FILE)}: {exc})") from exc
        if not isinstance(state, dict) or "version" not in state:
            raise InfrablocksError(
                f"{self._where(environment, block, STATE_FILE)} is not a Terraform state file")
        return state

    def read_outputs(self, environment: str, block: str) -> Outputs:
        return Outputs.from_state(self.read_state(environment, block))

    # -- deployment records -----------------------------------------------------------------

    def put_record(self, record: DeploymentRecord) -> None:
        check_name("environment", record.environment)
        check_name("block", record.block)
        self._put(record.environment, record.block, RECORD_FILE, record.dumps())

    def get_record(self, environment: str, block: str) -> DeploymentRecord | None:
        check_name("environment", environment)
        check_name("block", block)
        raw = self._get(environment, block, RECORD_FILE)
        if raw is None:
            return None
        return DeploymentRecord.loads(raw, where=self._where(environment, block, RECORD_FILE))

    def list_records(self, environment: str) -> list[DeploymentRecord]:
        records = (self.get_record(environment, block) for block in self.list_blocks(environment))
        return [r for r in records if r is not None]

    def delete_record(self, environment: str, block: str) -> bool:
        check_name("environment", environment)
        check_name("block", block)
        return self._delete(environment, block, RECORD_FILE)

    # -- documents ------------------------------------------------------------------------------

    def put_document(self, environment: str, block: str, name: str,
                     data: dict[str, Any]) -> None:
        rel = self._document(environment, block, name)
        try:
            raw = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise ValueError(f"document {name!r} is not JSON-serialisable: {exc}") from exc
        self._put(environment, block, rel, raw.encode())

    def get_document(self, environment: str, block: str, name: str) -> dict[str, Any] | None:
        rel = self._document(environment, block, name)
        raw = self._get(environment, block, rel)
        if raw is None:
            return None
        try:
            document: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise InfrablocksError(
                f"{self._where(environment, block, rel)} is not valid JSON: {exc}") from exc
        return document

    def delete_document(self, environment: str, block: str, name: str) -> bool:
        return self._delete(environment, block, self._document(environment, block, name))

    @staticmethod
    def _document(environment: str, block: str, name: str) -> str:
        check_name("environment", environment)
        check_name("block", block)
        check_name("document", name)
        return f"{DOCUMENTS_DIR}/{name}.json"

"""Deployment records: which version of a block is deployed in an environment, when and by whom.

A record lives beside the block's Terraform state, in the same backend (``deployment.json``), and
is what ``status`` and ``upgrade`` read instead of running Terraform. It never holds output
values — only their digest — so it carries no secrets.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from infrablocks.errors import InfrablocksError
from infrablocks.state.outputs import Outputs

RECORD_FORMAT = 1

# Record statuses. ``creating`` is written before an apply starts: a record left in that status
# means the apply was interrupted (crash, kill) and the state may be partial.
CREATING = "creating"
DEPLOYED = "deployed"
FAILED = "failed"
DESTROYING = "destroying"
# ``doit cloud --purge`` removed the environment's instances and volumes behind Terraform's back:
# the state still lists them (``extra["purged"]`` says what went); create rebuilds, destroy forgets.
PURGED = "purged"
STATUSES = (CREATING, DEPLOYED, FAILED, DESTROYING, PURGED)

# Keys of ``DeploymentRecord.extra`` that `create`, `upgrade` and `destroy` rely on.
EXTRA_CODE = "code"            # {"digest": "sha256:…", "files": {path: sha256}}: the code applied
EXTRA_INPUTS = "inputs"        # {"digest": "sha256:…", "variables": {name: sha256}}: what it read
EXTRA_REQUIRES = "requires"    # {dependency: version}: the deployed dependencies it was applied
#                                with (what `destroy` protects, whatever blocks.toml says now)
EXTRA_SOURCE = "source"        # name of the document holding a copy of the code applied
EXTRA_PREVIOUS = "previous_version"  # the version deployed before a failed update


def current_identity() -> str:
    """``user@host`` of this process, as shown in records and locks."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def utc_now_iso() -> str:
    """Now, UTC, ISO 8601 with seconds precision and a ``Z`` (e.g. ``2026-11-26T07:43:31Z``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class DeploymentRecord:
    """One block version applied (or being applied) in one environment."""

    environment: str
    block: str
    version: str
    status: str
    applied_at: str
    applied_by: str
    terraform_version: str
    outputs_digest: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form additions by the commands (e.g. dependency digests, images); JSON-able only."""

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, **asdict(self)}

    # -- what the commands keep in ``extra`` ------------------------------------------------

    @property
    def code_digest(self) -> dict[str, Any] | None:
        """The digest of the code applied (``{"digest", "files"}``), None for older records."""
        code = self.extra.get(EXTRA_CODE)
        return code if isinstance(code, dict) else None

    @property
    def input_digests(self) -> dict[str, str] | None:
        """Per input variable, the digest of the value applied; None for older records."""
        inputs = self.extra.get(EXTRA_INPUTS)
        variables = inputs.get("variables") if isinstance(inputs, dict) else None
        return {str(k): str(v) for k, v in variables.items()} \
            if isinstance(variables, dict) else None

    @property
    def applied_requires(self) -> dict[str, str] | None:
        """Dependency → the version deployed when this one was applied; None for older
        records (then only blocks.toml knows the dependencies)."""
        requires = self.extra.get(EXTRA_REQUIRES)
        return {str(k): str(v) for k, v in requires.items()} \
            if isinstance(requires, dict) else None

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: dict[str, Any], *, where: str) -> DeploymentRecord:
        """Parse a stored record; ``where`` names it in the error if it is malformed."""
        try:
            fmt = data.get("format", RECORD_FORMAT)
            if fmt != RECORD_FORMAT:
                raise ValueError(f"record format {fmt} (this infrablocks reads {RECORD_FORMAT})")
            return cls(
                environment=str(data["environment"]), block=str(data["block"]),
                version=str(data["version"]), status=str(data["status"]),
                applied_at=str(data["applied_at"]), applied_by=str(data["applied_by"]),
                terraform_version=str(data["terraform_version"]),
                outputs_digest=str(data["outputs_digest"]), extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InfrablocksError(
                f"deployment record {where} is malformed: {exc}",
                hint="fix or delete it; `doit status` rebuilds nothing from it on its own",
            ) from exc

    @classmethod
    def loads(cls, raw: bytes, *, where: str) -> DeploymentRecord:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InfrablocksError(f"deployment record {where} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InfrablocksError(f"deployment record {where} is not a JSON object")
        return cls.from_json(data, where=where)


def new_record(environment: str, block: str, version: str, *, outputs: Outputs | None,
               terraform_version: str, status: str = DEPLOYED,
               extra: dict[str, Any] | None = None) -> DeploymentRecord:
    """A record stamped now, by this user@host, with the digest of ``outputs`` (empty if None)."""
    if status not in STATUSES:
        raise ValueError(f"unknown record status {status!r}; valid: {', '.join(STATUSES)}")
    return DeploymentRecord(
        environment=environment, block=block, version=version, status=status,
        applied_at=utc_now_iso(), applied_by=current_identity(),
        terraform_version=terraform_version,
        outputs_digest=(outputs or Outputs()).digest(), extra=dict(extra or {}),
    )

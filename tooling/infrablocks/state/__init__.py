"""State: backends (local directory, S3), deployment records, documents, locks, outputs.

The usual entry points::

    from infrablocks.state import backend_from_settings
    backend = backend_from_settings(registry.settings.get("state", {}), repo_root)
    spec = backend.terraform_backend(env, block)          # → prepare_workdir(..., backend=spec)
    with backend.acquire_lock(env, block, "create"):      # LockHeldError names the holder
        ...
        backend.put_record(new_record(env, block, version, outputs=backend.read_outputs(env, block),
                                      terraform_version=tf_version))

See docs/state-and-runner.md.
"""

from infrablocks.state.backends import BlobStateBackend, StateBackend, check_name
from infrablocks.state.locks import Lock, LockHeldError, LockInfo
from infrablocks.state.outputs import MASK, Outputs, outputs_to_json, render_outputs_table
from infrablocks.state.records import (
    CREATING,
    DEPLOYED,
    DESTROYING,
    FAILED,
    PURGED,
    DeploymentRecord,
    current_identity,
    new_record,
)
from infrablocks.state.settings import backend_from_settings
from infrablocks.state.spec import BackendSpec

__all__ = [
    "CREATING", "DEPLOYED", "DESTROYING", "FAILED", "MASK", "PURGED",
    "BackendSpec", "BlobStateBackend", "DeploymentRecord", "Lock", "LockHeldError", "LockInfo",
    "Outputs",
    "StateBackend", "backend_from_settings", "check_name", "current_identity", "new_record",
    "outputs_to_json", "render_outputs_table",
]

"""What Terraform needs to reach a deployment's state: the backend block a state backend gives.

Every state backend (:mod:`infrablocks.state.backends`) answers ``terraform_backend(env, block)``
with a :class:`BackendSpec`; the Terraform working directory (``infrablocks.terraform.workdir``)
writes it as the ``backend`` block of ``_infrablocks_backend.tf`` (and a ``.tfbackend`` file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from infrablocks.errors import ConfigError

__all__ = ["BACKEND_KINDS", "BackendSpec"]

BACKEND_KINDS = ("local", "s3")


@dataclass(frozen=True)
class BackendSpec:
    """Where a deployment's state lives.

    ``local``: ``config = {"path": "/abs/terraform.tfstate"}`` (relative paths are relative to the
    working directory). ``s3``: the partial configuration (bucket, key, region, endpoints, …),
    written to a ``.tfbackend`` file and passed to ``terraform init -backend-config``.
    """

    kind: str
    config: Mapping[str, object] = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in BACKEND_KINDS:
            raise ConfigError(f"unknown state backend {self.kind!r}",
                              hint=f"valid backends: {', '.join(BACKEND_KINDS)}")
        if self.kind == "local" and not isinstance(self.config.get("path"), str | os.PathLike):
            raise ConfigError("the local state backend needs a `path` (the state file)")
        if self.kind == "s3":
            missing = [k for k in ("bucket", "key") if not self.config.get(k)]
            if missing:
                raise ConfigError(f"the s3 state backend needs {' and '.join(missing)}",
                                  hint="set bucket, key (and region, endpoints …) in its config")

"""blocks.toml ``[state]``: which state backend a repository uses, with its settings checked.

The one place that knows every backend (:mod:`infrablocks.state.local`,
:mod:`infrablocks.state.s3`); the backends know only the protocol (:mod:`.backends`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infrablocks.errors import ConfigError
from infrablocks.state.backends import StateBackend

LOCAL_KEYS = {"backend", "path"}
S3_KEYS = {"backend", "bucket", "prefix", "region", "endpoint", "use_path_style", "access_key",
           "secret_key", "skip_checks"}


def backend_from_settings(settings: dict[str, Any] | None, repo_root: Path) -> StateBackend:
    """The backend configured by blocks.toml's ``[state]`` table (``settings``; may be empty).

    Keys (unknown keys are an error)::

        backend        "local" (default) | "s3"
        # local
        path           state directory; relative to the repo root
                       (default ".infrablocks/state")
        # s3
        bucket         bucket name (required)
        prefix         key prefix (default "infrablocks"): keys are PREFIX/ENV/BLOCK/...
        region         default "us-east-1"
        endpoint       S3 endpoint URL, e.g. "http://127.0.0.1:5000" for moto (default: AWS)
        use_path_style default true when `endpoint` is set, else false
        skip_checks    skip Terraform's credential / account / region / metadata checks;
                       default true when `endpoint` is set (needed by S3 look-alikes)
        access_key, secret_key
                       static credentials, for test endpoints only (moto takes any); for AWS
                       leave them out and use the usual AWS_* environment / profile
    """
    from infrablocks.state.local import LocalBackend

    settings = dict(settings or {})
    kind = settings.get("backend", "local")
    if kind == "local":
        _reject_unknown(settings, LOCAL_KEYS, "local")
        raw_path = settings.get("path", ".infrablocks/state")
        if not isinstance(raw_path, str) or not raw_path:
            raise ConfigError("blocks.toml [state] path must be a non-empty string",
                              hint='e.g. path = ".infrablocks/state"')
        path = Path(raw_path).expanduser()
        return LocalBackend(path if path.is_absolute() else repo_root / path)
    if kind == "s3":
        from infrablocks.state.s3 import S3Backend, S3Settings

        _reject_unknown(settings, S3_KEYS, "s3")
        return S3Backend(S3Settings.from_table(settings))
    raise ConfigError(f"blocks.toml [state] backend = {kind!r} is not a known state backend",
                      hint='valid: "local" (default), "s3"')


def _reject_unknown(settings: dict[str, Any], valid: set[str], kind: str) -> None:
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(
            f"blocks.toml [state]: unknown key{'s' if len(unknown) > 1 else ''} for the "
            f"{kind} backend: {', '.join(unknown)}",
            hint=f"valid keys: {', '.join(sorted(valid))}")

"""Working directories: where Terraform runs a block for one environment.

``work_root/ENV/BLOCK/`` holds a copy of the block's files (Terraform never writes into
``blocks/``), the generated backend block and inputs, and two small bookkeeping files:

- ``.infrablocks-manifest.json``: which files were copied from which source, so that files of an
  older block version are removed while ``.terraform/``, the lock file and anything Terraform
  wrote are kept; and where the deployment's private directory is;
- ``.infrablocks-init.json``: what the last successful ``terraform init`` saw, so init runs again
  only when the backend configuration or the block's files changed.

Secrets never go into the working directory. Every deployment has a **private directory**,
``private_root/ENV/BLOCK/`` (0700, files 0600; by default ``<work_root>/../private``, i.e.
``.infrablocks/private/``), one of the tool's state folders:

- ``inputs.json``: the input variables holding a sensitive value (``Inputs.sensitive``, e.g. a
  dependency object with a sensitive output). The driver passes them to every Terraform process
  run in the working directory as ``TF_VAR_<name>`` environment variables (HCL literals), so
  plan, apply, destroy, the rolling engine — any caller — sees the same inputs while
  ``_infrablocks_inputs.auto.tfvars.json`` holds only the others.
- saved plans (``Terraform.plan``'s default ``-out``): a saved plan embeds every variable value.
- the block tests' outputs files (``INFRABLOCKS_BLOCK_OUTPUTS`` / ``_DEPENDENCY_OUTPUTS``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from infrablocks.errors import ConfigError
from infrablocks.private_files import write_atomic
from infrablocks.state.spec import BackendSpec
from infrablocks.terraform.hcl import hcl_attributes

BACKEND_FILE = "_infrablocks_backend.tf"
BACKEND_CONFIG_FILE = "_infrablocks_backend.tfbackend"
INPUTS_FILE = "_infrablocks_inputs.auto.tfvars.json"
MANIFEST_FILE = ".infrablocks-manifest.json"
PRIVATE_INPUTS_FILE = "inputs.json"
PRIVATE_ROOT_NAME = "private"
INIT_STAMP_FILE = ".infrablocks-init.json"
GENERATED_PREFIX = "_infrablocks_"

# Never copied from a block's source directory.
_SKIPPED_DIRS = {"tests", ".terraform", "__pycache__", ".pytest_cache", ".git"}
_SKIPPED_FILES = re.compile(r"^(terraform\.tfstate.*|.*\.tfplan|\.infrablocks-.*|.*\.pyc)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Inputs(dict[str, Any]):
    """Input variables (name → value) and which of them hold a sensitive value.

    ``sensitive``: names of the variables that carry any sensitive value (a dependency object
    one of whose attributes is a sensitive output). They are kept out of the working directory.
    """

    def __init__(self, values: Mapping[str, object] | None = None, *,
                 sensitive: Iterable[str] = ()) -> None:
        super().__init__(values or {})
        self.sensitive: frozenset[str] = frozenset(sensitive)

    def split(self) -> tuple[dict[str, object], dict[str, object]]:
        """(plain, sensitive) variables."""
        plain = {k: v for k, v in self.items() if k not in self.sensitive}
        return plain, {k: v for k, v in self.items() if k in self.sensitive}


def private_root_for(work_root: Path) -> Path:
    """The default root of the private directories: ``work_root``'s sibling ``private``."""
    return work_root.parent / PRIVATE_ROOT_NAME


def private_dir_of(workdir: Path) -> Path | None:
    """The private directory recorded in a prepared working directory (None if unprepared)."""
    recorded = (_read_json(workdir / MANIFEST_FILE) or {}).get("private_dir")
    return Path(recorded) if isinstance(recorded, str) else None


def sensitive_inputs(workdir: Path) -> dict[str, object]:
    """The sensitive input variables of a prepared working directory (from its private dir)."""
    private = private_dir_of(workdir)
    if private is None:
        return {}
    data = _read_json(private / PRIVATE_INPUTS_FILE)
    return data or {}


def read_inputs(workdir: Path) -> Inputs | None:
    """All inputs the working directory was last prepared with (None if it never was)."""
    plain = _read_json(workdir / INPUTS_FILE)
    if plain is None:
        return None
    hidden = sensitive_inputs(workdir)
    return Inputs({**plain, **hidden}, sensitive=hidden)


def forget_private_dir(workdir: Path) -> None:
    """Remove the working directory's private directory (after its deployment was destroyed:
    its sensitive inputs and saved plans go with the state)."""
    private = private_dir_of(workdir)
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)


def terraform_variables_env(workdir: Path) -> dict[str, str]:
    """``TF_VAR_<name>`` → HCL literal for each sensitive input of ``workdir``.

    Terraform parses a ``TF_VAR_`` value as an HCL expression when the variable's type is not a
    primitive (our dependency objects); a string-typed variable takes the text as it is.
    """
    from infrablocks.terraform.hcl import hcl_value

    return {f"TF_VAR_{name}": value if isinstance(value, str) else hcl_value(value)
            for name, value in sensitive_inputs(workdir).items()}


def workdir_path(work_root: Path, environment: str, block: str) -> Path:
    for what, name in (("environment", environment), ("block", block)):
        if not _NAME.match(name):
            raise ConfigError(f"invalid {what} name {name!r} for a working directory",
                              hint="use letters, digits, '_', '-' and '.'")
    return work_root / environment / block


def prepare_workdir(work_root: Path, environment: str, block: str, source_dir: Path,
                    backend: BackendSpec, inputs: Mapping[str, object], *,
                    private_root: Path | None = None) -> Path:
    """Make ``work_root/ENV/BLOCK/`` ready for ``terraform init/plan/apply`` and return it.

    ``inputs``: an :class:`Inputs` (or a plain mapping: nothing sensitive). Sensitive inputs go
    to the private directory ``private_root/ENV/BLOCK/`` (default
    :func:`private_root_for`), the others to ``_infrablocks_inputs.auto.tfvars.json``.
    """
    from infrablocks.private_files import private_dir, write_private_text

    backend.validate()
    if not source_dir.is_dir():
        raise ConfigError(f"block {block!r}: source directory {source_dir} does not exist")
    workdir = workdir_path(work_root, environment, block)
    workdir.mkdir(parents=True, exist_ok=True)

    sources = dict(source_files(source_dir))
    clashing = sorted(rel for rel in sources if Path(rel).name.startswith(GENERATED_PREFIX))
    if clashing:
        raise ConfigError(f"block {block!r} ({source_dir}): file names starting with "
                          f"{GENERATED_PREFIX!r} are reserved for infrablocks",
                          problems=clashing)

    old = _read_json(workdir / MANIFEST_FILE) or {}
    for stale in set(old.get("files", {})) - set(sources):
        _remove_stale(workdir, stale)

    digests: dict[str, str] = {}
    for rel, src in sorted(sources.items()):
        digests[rel] = _file_digest(src)
        dest = workdir / rel
        if old.get("files", {}).get(rel) == digests[rel] and dest.is_file():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)

    _write_text(workdir / BACKEND_FILE, _render_backend(backend))
    tfbackend = workdir / BACKEND_CONFIG_FILE
    if backend.kind == "local":
        tfbackend.unlink(missing_ok=True)
    else:
        _write_text(tfbackend, hcl_attributes(backend.config))
    plain, hidden = (inputs.split() if isinstance(inputs, Inputs)
                     else (dict(inputs), {}))
    private = workdir_path(private_root or private_root_for(work_root), environment, block)
    private_dir(private, base=private.parent.parent.parent)
    if hidden:
        write_private_text(private / PRIVATE_INPUTS_FILE, _render_inputs(block, hidden))
    else:
        (private / PRIVATE_INPUTS_FILE).unlink(missing_ok=True)
    _write_text(workdir / INPUTS_FILE, _render_inputs(block, plain))
    _write_text(workdir / MANIFEST_FILE, json.dumps(
        {"source_dir": str(source_dir.resolve()), "files": digests,
         "private_dir": str(private.resolve())}, indent=2, sort_keys=True))
    return workdir


def init_reason(workdir: Path, extra_backend_config: Mapping[str, object] | None = None
                ) -> str | None:
    """Why ``terraform init`` must run in ``workdir`` now, or None when the last init still holds.

    The answer starts with ``"backend"`` when the backend configuration changed (init then needs
    ``-reconfigure``).
    """
    stamp = _read_json(workdir / INIT_STAMP_FILE)
    if stamp is None or not (workdir / ".terraform").is_dir():
        return "not initialized"
    if stamp.get("backend") != backend_digest(workdir, extra_backend_config):
        return "backend configuration changed"
    if stamp.get("sources") != sources_digest(workdir):
        return "block files changed"
    return None


def record_init(workdir: Path, extra_backend_config: Mapping[str, object] | None = None) -> None:
    """Remember what a successful init saw (called by the driver)."""
    _write_text(workdir / INIT_STAMP_FILE, json.dumps({
        "backend": backend_digest(workdir, extra_backend_config),
        "sources": sources_digest(workdir),
    }, indent=2))


def backend_digest(workdir: Path, extra: Mapping[str, object] | None = None) -> str:
    digest = hashlib.sha256()
    for name in (BACKEND_FILE, BACKEND_CONFIG_FILE):
        path = workdir / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    digest.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def sources_digest(workdir: Path) -> str:
    manifest = _read_json(workdir / MANIFEST_FILE) or {}
    return hashlib.sha256(json.dumps(manifest.get("files", {}), sort_keys=True).encode()
                          ).hexdigest()


def source_files(source_dir: Path) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, path)`` of a block's files, as copied into a working directory
    (no ``tests/``, ``.terraform/``, state files, saved plans or bookkeeping files)."""
    for dirpath, dirnames, filenames in os.walk(source_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for name in sorted(filenames):
            if _SKIPPED_FILES.match(name):
                continue
            path = Path(dirpath) / name
            yield path.relative_to(source_dir).as_posix(), path


def _remove_stale(workdir: Path, rel: str) -> None:
    path = workdir / rel
    path.unlink(missing_ok=True)
    # Remove directories the stale file leaves empty, up to (not including) the workdir.
    parent = path.parent
    while parent != workdir and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _render_backend(backend: BackendSpec) -> str:
    header = "# Generated by infrablocks: the state backend of this deployment.\n"
    if backend.kind == "local":
        path = backend.config["path"]
        assert isinstance(path, str | os.PathLike)   # BackendSpec.validate
        body = hcl_attributes({"path": os.fspath(path)}, indent=2)
        return f'{header}terraform {{\n  backend "local" {{\n{body}  }}\n}}\n'
    return (f"{header}# Partial configuration: the settings are in {BACKEND_CONFIG_FILE}.\n"
            f'terraform {{\n  backend "{backend.kind}" {{}}\n}}\n')


def _render_inputs(block: str, inputs: Mapping[str, object]) -> str:
    try:
        return json.dumps(dict(inputs), indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        bad = [k for k, v in inputs.items() if not _is_json(v)]
        raise ConfigError(f"block {block!r}: inputs cannot be written as JSON ({exc})",
                          problems=[f"input {k!r}" for k in bad]) from None


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_text(path: Path, text: str) -> None:
    """Write only when the content differs (keeps mtimes stable for unchanged files)."""
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    write_atomic(path, text, mode=None)

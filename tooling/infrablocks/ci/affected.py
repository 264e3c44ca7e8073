"""``doit affected``: which block versions a change affects, and why.

Changed files are mapped to

- block versions, by their folder (``blocks/NAME/VERSION/`` or the version's ``path``);
- images (``images/NAME/VERSION/``) and then the block versions that list the image;
- blocks.toml entries: a version added, a requirement / image list / setting changed, a block
  setting (``stateful``, ``rolling``) changed, an environment pin changed;
- shared Terraform modules: a changed file inside a directory that a block version uses as a
  local module source (``source = "../../../modules/NAME"``, followed through modules that use
  other modules);

then, by default, every block version that depends on an affected one (its requirement allows
the affected version), transitively. A removed block version affects the versions whose
requirement allowed it (their resolution changes).

blocks.toml is read as plain TOML at both states: an old state need not validate against the
current tree.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrablocks.ci.git import ChangedFile, Tree, changed_files, default_base, resolve_ref

REGISTRY_FILE = "blocks.toml"
_MODULE_SOURCE = re.compile(r'^\s*source\s*=\s*"(?P<source>\.{1,2}/[^"]*)"', re.MULTILINE)
_COMPARED_VERSION_KEYS = ("requires", "images", "path")


@dataclass
class VersionEntry:
    block: str
    version: str
    path: str                                      # folder, relative to the repository
    requires: dict[str, str] = field(default_factory=dict)   # block → constraint text
    images: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)   # other keys (rolling, …)

    @property
    def key(self) -> str:
        return f"{self.block}@{self.version}"


@dataclass
class RegistrySnapshot:
    """blocks.toml of one state, as plain data."""

    versions: dict[str, VersionEntry]                       # "base@1.0.0" → entry
    block_settings: dict[str, dict[str, Any]]               # block → its non-version keys
    pins: dict[str, dict[str, str]]                         # environment → block → version

    @classmethod
    def parse(cls, text: str | None) -> RegistrySnapshot:
        try:
            data = tomllib.loads(text) if text else {}
        except tomllib.TOMLDecodeError:
            data = {}
        versions: dict[str, VersionEntry] = {}
        settings: dict[str, dict[str, Any]] = {}
        for name, spec in (data.get("blocks") or {}).items():
            if not isinstance(spec, dict):
                continue
            settings[name] = {k: v for k, v in spec.items()
                              if k not in ("versions", "description")}
            for version, vspec in (spec.get("versions") or {}).items():
                vspec = vspec if isinstance(vspec, dict) else {}
                path = str(vspec.get("path") or f"blocks/{name}/{version}").strip("/")
                versions[f"{name}@{version}"] = VersionEntry(
                    block=name, version=str(version), path=posixpath.normpath(path),
                    requires={str(k): str(v) for k, v in (vspec.get("requires") or {}).items()},
                    images=[str(i) for i in (vspec.get("images") or [])],
                    settings={k: v for k, v in vspec.items()
                              if k not in _COMPARED_VERSION_KEYS})
        pins = {env: {str(b): str(v) for b, v in ((spec or {}).get("pins") or {}).items()}
                for env, spec in (data.get("environments") or {}).items()
                if isinstance(spec, dict)}
        return cls(versions=versions, block_settings=settings, pins=pins)

    def versions_of(self, block: str) -> list[VersionEntry]:
        from infrablocks.images.refs import version_key

        found = [e for e in self.versions.values() if e.block == block]
        return sorted(found, key=lambda e: version_key(e.version))

    def users_of_image(self, image: str) -> list[VersionEntry]:
        return [e for e in self.versions.values() if image in e.images]


@dataclass
class AffectedVersion:
    block: str
    version: str
    causes: dict[str, list[str]] = field(default_factory=dict)  # reason → files behind it
    direct: bool = True             # False: affected only as a dependent

    @property
    def key(self) -> str:
        return f"{self.block}@{self.version}"

    @property
    def reasons(self) -> list[str]:
        """One line per reason, naming (up to three of) the changed files behind it."""
        lines = []
        for reason, files in self.causes.items():
            if not files:
                lines.append(reason)
                continue
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3
                                            else "")
            lines.append(f"{reason} ({shown})")
        return lines


@dataclass
class Affected:
    base: str                       # commit id
    head: str | None                # commit id, None for the working tree
    changed: list[ChangedFile]
    versions: dict[str, AffectedVersion]     # "base@1.1.0" → why, in discovery order
    images: list[str]               # changed images that exist at head ("etcd@1.1.0")
    removed_versions: list[str]
    removed_images: list[str]
    other_files: list[str]          # changed files that map to no block (tooling, docs, …)
    registry: RegistrySnapshot      # blocks.toml at head

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base, "head": self.head or "working tree",
            "changed_files": [{"path": c.path, "status": c.status,
                               **({"old_path": c.old_path} if c.old_path else {})}
                              for c in self.changed],
            "blocks": [{"block": a.block, "version": a.version, "direct": a.direct,
                        "reasons": a.reasons} for a in self.versions.values()],
            "images": self.images,
            "removed_versions": self.removed_versions,
            "removed_images": self.removed_images,
            "other_files": self.other_files,
        }


def find_affected(repo_root: Path, base: str | None = None, head: str | None = None, *,
                  dependents: bool = True) -> Affected:
    """Compare ``base`` (default: merge base with the default branch) with ``head`` (default:
    the working tree) and say which block versions are affected and why."""
    head_id = resolve_ref(repo_root, head) if head is not None else None
    base_id = resolve_ref(repo_root, base) if base is not None else \
        resolve_ref(repo_root, default_base(repo_root, head_id))
    changes = changed_files(repo_root, base_id, head_id)
    head_tree, base_tree = Tree(repo_root, head_id), Tree(repo_root, base_id)
    before = RegistrySnapshot.parse(base_tree.read(REGISTRY_FILE))
    after = RegistrySnapshot.parse(head_tree.read(REGISTRY_FILE))
    mapper = _Mapper(before, after, head_tree)
    for change in changes:
        mapper.file(change)
    if any(c.path == REGISTRY_FILE for c in changes):
        mapper.registry_changes()
    mapper.modules([c for c in changes if c.path in mapper.unmapped])
    if dependents:
        mapper.add_dependents()
    return Affected(base=base_id, head=head_id, changed=changes, versions=mapper.affected,
                    images=sorted(mapper.images), removed_versions=sorted(mapper.removed),
                    removed_images=sorted(mapper.removed_images),
                    other_files=sorted(mapper.unmapped), registry=after)


class _Mapper:
    def __init__(self, before: RegistrySnapshot, after: RegistrySnapshot, head: Tree) -> None:
        self.before, self.after, self.head = before, after, head
        self.affected: dict[str, AffectedVersion] = {}
        self.images: set[str] = set()
        self.removed: set[str] = set()
        self.removed_images: set[str] = set()
        self.unmapped: set[str] = set()
        # the longest folder first, so a version nested in another's folder wins
        self._folders = sorted(((e.path, e) for e in after.versions.values()),
                               key=lambda item: -len(item[0]))
        self._old_folders = sorted(((e.path, e) for e in before.versions.values()),
                                   key=lambda item: -len(item[0]))

    def add(self, key: str, reason: str, file: str | None = None, *,
            direct: bool = True) -> bool:
        """Record ``reason`` (caused by ``file``) for ``key``, a version at head; True if the
        version was not affected before."""
        entry = self.after.versions.get(key)
        if entry is None:
            return False
        found = self.affected.get(key)
        new = found is None
        if found is None:
            found = self.affected[key] = AffectedVersion(entry.block, entry.version,
                                                         direct=direct)
        files = found.causes.setdefault(reason, [])
        if file and file not in files:
            files.append(file)
        found.direct = found.direct or direct
        return new

    # -- files ------------------------------------------------------------------------------

    def file(self, change: ChangedFile) -> None:
        paths = [change.path] + ([change.old_path] if change.old_path else [])
        mapped = False
        for path in paths:
            mapped |= self._block_file(path, change)
            mapped |= self._image_file(path, change)
        if change.path == REGISTRY_FILE:
            mapped = True
        if not mapped:
            self.unmapped.add(change.path)

    def _block_file(self, path: str, change: ChangedFile) -> bool:
        for folder, entry in self._folders:
            if path.startswith(folder + "/"):
                self.add(entry.key, "its files changed", f"{change.status} {path}")
                return True
        for folder, entry in self._old_folders:
            if path.startswith(folder + "/"):
                if entry.key not in self.after.versions:
                    self.removed.add(entry.key)
                return True
        return False

    def _image_file(self, path: str, change: ChangedFile) -> bool:
        parts = path.split("/")
        if len(parts) < 4 or parts[0] != "images":
            return False
        image = f"{parts[1]}@{parts[2]}"
        if self.head.files_under(f"images/{parts[1]}/{parts[2]}"):
            self.images.add(image)
            for entry in self.after.users_of_image(image):
                self.add(entry.key, f"uses image {image}, which changed",
                         f"{change.status} {path}")
        else:
            self.removed_images.add(image)
            for entry in self.after.users_of_image(image):
                self.add(entry.key, f"uses image {image}, whose folder was removed")
        return True

    # -- blocks.toml ------------------------------------------------------------------------

    def registry_changes(self) -> None:
        before, after = self.before, self.after
        for key, entry in after.versions.items():
            old = before.versions.get(key)
            if old is None:
                self.add(key, f"{REGISTRY_FILE}: version {entry.version} added")
                continue
            for dep in sorted(set(old.requires) | set(entry.requires)):
                was, now = old.requires.get(dep), entry.requires.get(dep)
                if was != now:
                    self.add(key, f"{REGISTRY_FILE}: requirement on {dep} changed: "
                                  f"{_shown(was)} → {_shown(now)}")
            if old.images != entry.images:
                self.add(key, f"{REGISTRY_FILE}: images changed: "
                              f"{', '.join(old.images) or 'none'} → "
                              f"{', '.join(entry.images) or 'none'}")
            if old.path != entry.path:
                self.add(key, f"{REGISTRY_FILE}: path changed: {old.path} → {entry.path}")
            for setting in sorted(set(old.settings) | set(entry.settings)):
                if old.settings.get(setting) != entry.settings.get(setting):
                    self.add(key, f"{REGISTRY_FILE}: version setting `{setting}` changed")
        for key in before.versions.keys() - after.versions.keys():
            self.removed.add(key)
        for block, settings_now in after.block_settings.items():
            settings_was = before.block_settings.get(block, {})
            for setting in sorted(set(settings_was) | set(settings_now)):
                if (settings_was.get(setting) != settings_now.get(setting)
                        and block in before.block_settings):
                    for entry in after.versions_of(block):
                        self.add(entry.key, f"{REGISTRY_FILE}: block setting `{setting}` of "
                                            f"{block} changed")
        for env in sorted(set(before.pins) | set(after.pins)):
            pins_was, pins_now = before.pins.get(env, {}), after.pins.get(env, {})
            for block in sorted(set(pins_was) | set(pins_now)):
                if pins_was.get(block) == pins_now.get(block):
                    continue
                target = pins_now.get(block)
                versions = after.versions_of(block)
                key = f"{block}@{target}" if target else (versions[-1].key if versions else "")
                self.add(key, f"{REGISTRY_FILE}: pin of {block} in environment {env} changed: "
                              f"{_shown(pins_was.get(block))} → {_shown(target)}")

    # -- shared modules ---------------------------------------------------------------------

    def modules(self, changes: list[ChangedFile]) -> None:
        """Changed files inside local module sources of block versions."""
        if not changes:
            return
        resolver = _ModuleSources(self.head)
        for entry in self.after.versions.values():
            for module_dir in resolver.used_by(entry.path):
                for change in changes:
                    paths = [change.path] + ([change.old_path] if change.old_path else [])
                    if any(p.startswith(module_dir + "/") for p in paths):
                        self.add(entry.key, f"uses shared module {module_dir}, which changed",
                                 f"{change.status} {change.path}")
                        self.unmapped.discard(change.path)

    # -- dependents -------------------------------------------------------------------------

    def add_dependents(self) -> None:
        from infrablocks.versions import (
            ConstraintSyntaxError,
            VersionSyntaxError,
            parse_constraint,
            parse_version,
        )

        def allows(constraint: str, version: str) -> bool:
            try:
                return parse_constraint(constraint).allows(parse_version(version))
            except (ConstraintSyntaxError, VersionSyntaxError):
                return False

        by_dependency: dict[str, list[VersionEntry]] = {}
        for entry in self.after.versions.values():
            for dep in entry.requires:
                by_dependency.setdefault(dep, []).append(entry)
        queue = deque((a.block, a.version, "affected") for a in list(self.affected.values()))
        for key in sorted(self.removed):
            block, _, version = key.partition("@")
            queue.append((block, version, "removed"))
        while queue:
            block, version, why = queue.popleft()
            for dependent in by_dependency.get(block, []):
                constraint = dependent.requires[block]
                if not allows(constraint, version):
                    continue
                reason = (f"depends on {block} {version} ({why}; requirement {constraint})"
                          if why == "affected" else
                          f"its requirement {block} {constraint} allowed {version}, which was "
                          "removed")
                if self.add(dependent.key, reason, direct=False):
                    queue.append((dependent.block, dependent.version, "affected"))


class _ModuleSources:
    """Local module directories a block version uses, followed through nested modules."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._direct: dict[str, set[str]] = {}

    def direct(self, directory: str) -> set[str]:
        if directory not in self._direct:
            found: set[str] = set()
            for path in self.tree.files_under(directory):
                if not path.endswith(".tf") or posixpath.dirname(path) != directory:
                    continue
                for match in _MODULE_SOURCE.finditer(self.tree.read(path) or ""):
                    target = posixpath.normpath(posixpath.join(directory,
                                                               match.group("source")))
                    if not target.startswith("..") and target != directory:
                        found.add(target)
            self._direct[directory] = found
        return self._direct[directory]

    def used_by(self, directory: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.direct(directory))
        while stack:
            module = stack.pop()
            if module in seen:
                continue
            seen.add(module)
            stack.extend(self.direct(module) - seen)
        return seen


def _shown(value: str | None) -> str:
    return f"`{value}`" if value is not None else "none"

"""Caches that make loading a very large registry cheap; invisible for ordinary ones.

Only registries whose blocks.toml is at least ``CACHE_MIN_BYTES`` use them (a 10,000-block
registry is ~10 MB; the example monorepo's is 2 KB and leaves nothing behind). Both live in
``.infrablocks/cache/`` (gitignored) and are best effort: unreadable, stale or foreign caches
are ignored and rewritten.

- The parsed TOML document, keyed by blocks.toml's size, mtime and inode: ``marshal`` loads it
  2–3x faster than parsing.
- The listing of each ``blocks/NAME/`` directory, keyed by the directory's mtime: one ``stat``
  instead of a full listing per block (the validation checks every version's directory). As
  git does for its index, a listing taken within ``RACY_SECONDS`` of the directory's last change
  is not cached, since a change in the same clock tick would not move the mtime.
"""

from __future__ import annotations

import marshal
import os
import time
from pathlib import Path
from typing import Any

CACHE_MIN_BYTES = 1_000_000
RACY_SECONDS = 2.0
_FORMAT = 1


def cache_dir(root: Path) -> Path:
    from infrablocks.paths import work_dir

    return work_dir(root) / "cache"


def wanted(registry_file: Path) -> bool:
    """Whether this registry is big enough for the caches."""
    try:
        return registry_file.stat().st_size >= CACHE_MIN_BYTES
    except OSError:
        return False


def _write(path: Path, payload: Any) -> None:
    try:
        from infrablocks.private_files import private_dir, write_private_file

        data = marshal.dumps(payload)
        private_dir(path.parent, base=path.parent.parent)
        write_private_file(path, data)
    except (OSError, ValueError):  # read-only checkout, or TOML dates (not marshallable)
        pass


def _read(path: Path) -> Any:
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None


def _file_key(file: Path) -> tuple[int, int, int, int]:
    stat = file.stat()
    return (_FORMAT, stat.st_size, stat.st_mtime_ns, stat.st_ino)


def cached_document(root: Path, registry_file: Path) -> dict[str, Any] | None:
    """The parsed blocks.toml from the cache, if it is there and current."""
    if not wanted(registry_file):
        return None
    stored = _read(cache_dir(root) / "blocks.toml.marshal")
    if not isinstance(stored, tuple) or len(stored) != 2:
        return None
    key, document = stored
    current = _file_key(registry_file)
    return document if tuple(key) == current and isinstance(document, dict) else None


def store_document(root: Path, registry_file: Path, document: dict[str, Any]) -> None:
    if wanted(registry_file):
        _write(cache_dir(root) / "blocks.toml.marshal", (_file_key(registry_file), document))


class DirectoryListings:
    """The entries of each ``blocks/NAME`` directory, from the cache when its mtime matches.

    ``use_cache=False`` (small registries): plain listings, nothing read or written.
    """

    def __init__(self, root: Path, *, use_cache: bool) -> None:
        self.blocks_dir = os.path.join(root, "blocks")
        self.use_cache = use_cache
        self.path = cache_dir(root) / "block-directories.marshal"
        self.cached: dict[str, tuple[int, frozenset[str]]] = {}
        self.changed = False
        if use_cache:
            stored = _read(self.path)
            if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == _FORMAT \
                    and isinstance(stored[1], dict):
                self.cached = stored[1]
        self._racy_after_ns = time.time_ns() - int(RACY_SECONDS * 1e9)

    def names(self, block: str) -> frozenset[str] | set[str] | None:
        """The entry names of ``blocks/BLOCK``, or None when it is not a readable directory."""
        directory = self.blocks_dir + os.sep + block
        if not self.use_cache:
            try:
                return set(os.listdir(directory))
            except OSError:
                return None
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            return None
        entry = self.cached.get(block)
        if entry is not None and entry[0] == mtime:
            return entry[1]
        try:
            names = frozenset(os.listdir(directory))
        except OSError:
            return None
        if mtime < self._racy_after_ns:
            self.cached[block] = (mtime, names)
            self.changed = True
        return names

    def save(self) -> None:
        if self.use_cache and self.changed:
            _write(self.path, (_FORMAT, self.cached))
            self.changed = False

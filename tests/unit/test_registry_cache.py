"""The caches of large registries: parsed TOML and block directory listings stay correct."""

from __future__ import annotations

import marshal
import os
import shutil
from pathlib import Path

import pytest

import infrablocks.registry_cache as registry_cache
from infrablocks.errors import ConfigError
from infrablocks.registry import load_registry
from tests.support.registry_repo import make_repo

TOML = '[blocks.a.versions."1.0.0"]\n[blocks.a.versions."1.1.0"]\n'


@pytest.fixture
def caching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat every registry as large, and no listing as racy."""
    monkeypatch.setattr(registry_cache, "CACHE_MIN_BYTES", 0)
    monkeypatch.setattr(registry_cache, "RACY_SECONDS", 0.0)


def cache_files(root: Path) -> list[str]:
    directory = root / ".infrablocks" / "cache"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_parsed_document_is_cached_and_invalidated(tmp_path: Path, caching: None) -> None:
    root = make_repo(tmp_path, TOML)
    assert list(load_registry(root).blocks) == ["a"]
    assert cache_files(root) == ["block-directories.marshal", "blocks.toml.marshal"]
    assert list(load_registry(root).blocks) == ["a"]  # from the caches
    make_repo(root, TOML + '[blocks.bb.versions."1.0.0"]\n')
    assert list(load_registry(root).blocks) == ["a", "bb"]
    (root / ".infrablocks/cache/blocks.toml.marshal").write_bytes(b"garbage")
    (root / ".infrablocks/cache/block-directories.marshal").write_bytes(marshal.dumps([1]))
    assert list(load_registry(root).blocks) == ["a", "bb"]


def test_a_removed_directory_is_noticed(tmp_path: Path, caching: None) -> None:
    root = make_repo(tmp_path, TOML)
    load_registry(root)
    directory = root / "blocks/a/1.1.0"
    shutil.rmtree(directory)
    with pytest.raises(ConfigError, match="directory blocks/a/1.1.0/ does not exist"):
        load_registry(root)
    directory.mkdir()
    load_registry(root)


def test_a_change_within_the_same_mtime_is_noticed_thanks_to_the_racy_rule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_cache, "CACHE_MIN_BYTES", 0)  # RACY_SECONDS as shipped
    root = make_repo(tmp_path, TOML)
    load_registry(root)  # listed right after the directories were made: not cached
    blocks_a = root / "blocks/a"
    stat = blocks_a.stat()
    shutil.rmtree(blocks_a / "1.1.0")
    os.utime(blocks_a, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime as before
    with pytest.raises(ConfigError, match="blocks/a/1.1.0/ does not exist"):
        load_registry(root)


def test_small_registries_leave_no_cache(tmp_path: Path) -> None:
    root = make_repo(tmp_path, TOML)
    load_registry(root)
    assert not (root / ".infrablocks").exists()


def test_listings_come_from_the_cache_when_the_mtime_matches(tmp_path: Path,
                                                             caching: None) -> None:
    # With the racy window disabled, a change that keeps the directory's mtime goes unnoticed:
    # proof that the listing came from the cache (and why the window exists).
    root = make_repo(tmp_path, TOML)
    load_registry(root)
    blocks_a = root / "blocks/a"
    stat = blocks_a.stat()
    shutil.rmtree(blocks_a / "1.1.0")
    os.utime(blocks_a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    load_registry(root)

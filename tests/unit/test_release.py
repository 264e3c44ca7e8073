"""Released versions are frozen (``infrablocks.release``): code digests, blocks.lock, which
versions were edited, cutting a new version with blocks.toml's layout kept."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from infrablocks.errors import ConfigError, InfrablocksError, UsageError
from infrablocks.registry import load_registry
from infrablocks.release.cut import cut_version, next_version
from infrablocks.release.digest import IMAGES_ENTRY, module_digest
from infrablocks.release.frozen import (
    code_changes,
    edited_versions,
    refuse_edited,
    released_check,
    undeclared_deployments,
)
from infrablocks.release.lockfile import LOCK_FILE, read_releases, record_release
from infrablocks.state import new_record
from infrablocks.state.local import LocalBackend
from tests.support.registry_repo import make_repo

TOML = '''\
# the registry (this comment stays)
[blocks.base]
stateful = true

[blocks.base.versions."1.0.0"]   # the first
images = ["etcd@1.0.0"]

[blocks.base.versions."1.1.0"]
images = ["etcd@1.1.0"]
rolling = { timeouts = { rejoin = 30 } }

[blocks.app]

[blocks.app.versions."1.0.0"]
requires = { base = "~> 1.0" }   # keep me

[environments.prod]
pins = { base = "1.0.0" }
'''
FILES = {"blocks/base/1.0.0/main.tf": "# one\n", "blocks/base/1.1.0/main.tf": "# two\n",
         "blocks/base/1.1.0/tests/test_x.py": "def test(): pass\n",
         "blocks/app/1.0.0/main.tf": "# app\n"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", TOML, files=FILES)


def test_module_digest_covers_what_terraform_sees(repo: Path) -> None:
    registry = load_registry(repo)
    version = registry.block_version("base", "1.1.0")
    digest = module_digest(version)
    assert set(digest.files) == {"main.tf", IMAGES_ENTRY}     # tests/ are not frozen code
    (version.path / "tests" / "test_x.py").write_text("changed\n")
    (version.path / ".terraform").mkdir()
    (version.path / ".terraform" / "junk").write_text("x")
    assert module_digest(version) == digest
    (version.path / "main.tf").write_text("# edited\n")
    (version.path / "new.tf").write_text("")
    edited = module_digest(version)
    assert edited.digest != digest.digest
    assert edited.differences(digest) == ["main.tf (changed)", "new.tf (added)"]
    assert digest.differences(edited) == ["main.tf (changed)", "new.tf (removed)"]


def test_the_image_list_is_part_of_a_versions_code(repo: Path) -> None:
    before = module_digest(load_registry(repo).block_version("base", "1.0.0"))
    toml = repo / "blocks.toml"
    toml.write_text(toml.read_text().replace('images = ["etcd@1.0.0"]',
                                             'images = ["etcd@1.0.1"]'))
    after = module_digest(load_registry(repo).block_version("base", "1.0.0"))
    assert after.differences(before) == [f"{IMAGES_ENTRY} (changed)"]


def test_release_writes_the_lock_file_and_refuses_other_code(repo: Path) -> None:
    registry = load_registry(repo)
    release, new = record_release(repo, registry.block_version("base", "1.1.0"))
    assert new and release.released
    record_release(repo, registry.block_version("app", "1.0.0"))
    again, new = record_release(repo, registry.block_version("base", "1.1.0"))
    assert not new and again.code == release.code
    text = (repo / LOCK_FILE).read_text()
    assert text.index("[app.") < text.index("[base.")          # sorted, stable for diffs
    assert set(read_releases(repo)) == {("base", "1.1.0"), ("app", "1.0.0")}

    (repo / "blocks/base/1.1.0/main.tf").write_text("# edited\n")
    with pytest.raises(InfrablocksError, match="released with other code.*main.tf"):
        record_release(repo, registry.block_version("base", "1.1.0"))
    [found] = edited_versions(registry, [])
    assert found.describe() == ("base 1.1.0 (released in blocks.lock) was edited: "
                                "main.tf (changed)")
    assert "doit new-version base" in found.hint()
    outcome = released_check(registry)
    assert len(outcome.problems) == 1 and "base 1.1.0" in outcome.problems[0]


def test_a_malformed_lock_file_names_the_problem(repo: Path) -> None:
    (repo / LOCK_FILE).write_text('[base."1.0.0"]\ndigest = 3\n')
    with pytest.raises(ConfigError) as caught:
        read_releases(repo)
    assert 'base."1.0.0": expected `digest` and `files`' in str(caught.value)
    (repo / LOCK_FILE).write_text("[base\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_releases(repo)


def test_deployed_versions_are_frozen_in_persistent_environments_only(repo: Path) -> None:
    registry = load_registry(repo)
    backend = LocalBackend(repo / ".infrablocks" / "state")
    version = registry.block_version("base", "1.0.0")
    code = module_digest(version).to_json()
    for environment in ("prod", "t-abc123"):
        backend.put_record(new_record(environment, "base", "1.0.0", outputs=None,
                                      terraform_version="1.15.5", extra={"code": code}))
    refuse_edited(registry, backend, "prod", [version])          # unchanged: fine
    (version.path / "main.tf").write_text("# edited\n")
    with pytest.raises(InfrablocksError) as caught:
        refuse_edited(registry, backend, "prod", [version])
    assert "base 1.0.0 (deployed in prod) was edited: main.tf (changed)" in str(caught.value)
    refuse_edited(registry, backend, "t-abc123", [version])      # ephemeral: may run it
    prod = backend.get_record("prod", "base")
    assert code_changes(version, prod) == ["main.tf (changed)"]
    assert code_changes(version, new_record("prod", "base", "1.0.0", outputs=None,
                                            terraform_version="x")) is None
    backend.put_record(new_record("prod", "gone", "0.1.0", outputs=None,
                                  terraform_version="x"))
    assert undeclared_deployments(registry, backend.list_records("prod")) == [
        "gone 0.1.0 in prod"]


def test_cut_version_copies_the_newest_and_keeps_the_layout(repo: Path) -> None:
    registry = load_registry(repo)
    assert next_version(registry, "base") == "1.2.0"
    assert next_version(registry, "base", "major") == "2.0.0"
    cut = cut_version(registry, "base")
    assert (cut.source, cut.version) == ("1.1.0", "1.2.0")
    assert (cut.path / "main.tf").read_text() == "# two\n"
    assert (cut.path / "tests" / "test_x.py").is_file()
    text = (repo / "blocks.toml").read_text()
    assert text.startswith("# the registry (this comment stays)\n")
    assert '[blocks.base.versions."1.0.0"]   # the first' in text
    assert textwrap.dedent('''\
        [blocks.base.versions."1.1.0"]
        images = ["etcd@1.1.0"]
        rolling = { timeouts = { rejoin = 30 } }

        [blocks.base.versions."1.2.0"]
        images = ["etcd@1.1.0"]
        rolling = { timeouts = { rejoin = 30 } }

        [blocks.app]''') in text
    reloaded = load_registry(repo)
    assert [str(v) for v in reloaded.blocks["base"].versions] == ["1.0.0", "1.1.0", "1.2.0"]

    app = cut_version(reloaded, "app", version="1.0.1")
    assert str(load_registry(repo).block_version("app", "1.0.1").requires["base"]) == "~> 1.0"
    assert app.source == "1.0.0"
    with pytest.raises(UsageError, match="already has version 1.0.1"):
        cut_version(load_registry(repo), "app", version="1.0.1")
    with pytest.raises(UsageError, match="has no version 9.9.9"):
        cut_version(load_registry(repo), "app", source="9.9.9")

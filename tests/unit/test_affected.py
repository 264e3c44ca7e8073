"""`doit affected`: changed files → affected block versions, on temporary git repositories
with scripted commits (changed block, image, requirement, pin, shared module, deleted version,
uncommitted work)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infrablocks.ci.affected import find_affected
from infrablocks.errors import UsageError

DOIT = Path(sys.executable).parent / "doit"

REGISTRY = """\
[blocks.base]
stateful = true
[blocks.base.versions."1.0.0"]
images = ["etcd@1.0.0"]
[blocks.base.versions."1.1.0"]
images = ["etcd@1.1.0"]

[blocks.nomad]
[blocks.nomad.versions."1.0.0"]
requires = { base = "~> 1.0" }

[blocks.app]
[blocks.app.versions."1.0.0"]
requires = { nomad = "~> 1.0" }

[blocks.legacy]
[blocks.legacy.versions."1.0.0"]
requires = { base = "= 1.0.0" }

[blocks.standalone]
[blocks.standalone.versions."1.0.0"]

[environments.prod]
pins = { base = "1.0.0" }
"""

FILES = {
    "dodo.py": "from infrablocks.tasks import *  # noqa: F403\n",
    "blocks/base/1.0.0/main.tf": "# base 1.0.0\n",
    "blocks/base/1.1.0/main.tf": "# base 1.1.0\n",
    "blocks/nomad/1.0.0/main.tf": 'module "network" {\n  source = "../../../modules/network"\n}\n',
    "blocks/app/1.0.0/main.tf": "# app\n",
    "blocks/legacy/1.0.0/main.tf": "# legacy\n",
    "blocks/standalone/1.0.0/main.tf": "# standalone\n",
    "modules/network/main.tf": 'module "inner" {\n  source = "../inner"\n}\n',
    "modules/inner/main.tf": "# inner\n",
    "modules/unused/main.tf": "# nobody uses this\n",
    "images/etcd/1.0.0/etcd.pkr.hcl": "# etcd 1.0.0\n",
    "images/etcd/1.0.0/files/entrypoint": "#!/bin/sh\n",
    "images/etcd/1.1.0/etcd.pkr.hcl": "# etcd 1.1.0\n",
    "images/etcd/1.1.0/files/entrypoint": "#!/bin/sh\n",
    "docs/notes.md": "notes\n",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def write(repo: Path, relative: str, text: str) -> None:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A monorepo on branch main with one commit, and a feature branch checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, "blocks.toml", REGISTRY)
    for relative, text in FILES.items():
        write(root, relative, text)
    commit(root, "initial")
    git(root, "checkout", "-q", "-b", "feature")
    return root


def reasons(result, key: str) -> list[str]:
    return result.versions[key].reasons


def test_nothing_changed_affects_nothing(repo: Path) -> None:
    result = find_affected(repo)
    assert result.versions == {} and result.changed == [] and result.images == []


def test_changed_block_version_and_its_dependents(repo: Path) -> None:
    write(repo, "blocks/base/1.1.0/main.tf", "# base 1.1.0, changed\n")
    commit(repo, "change base 1.1.0")
    result = find_affected(repo)
    assert reasons(result, "base@1.1.0") == [
        "its files changed (modified blocks/base/1.1.0/main.tf)"]
    assert result.versions["base@1.1.0"].direct
    # nomad ~> 1.0 allows 1.1.0, app depends on nomad; legacy pins = 1.0.0: not affected
    assert set(result.versions) == {"base@1.1.0", "nomad@1.0.0", "app@1.0.0"}
    assert not result.versions["nomad@1.0.0"].direct
    assert reasons(result, "nomad@1.0.0") == [
        "depends on base 1.1.0 (affected; requirement ~> 1.0)"]
    assert reasons(result, "app@1.0.0") == [
        "depends on nomad 1.0.0 (affected; requirement ~> 1.0)"]


def test_no_dependents(repo: Path) -> None:
    write(repo, "blocks/base/1.1.0/main.tf", "# changed\n")
    commit(repo, "change")
    assert set(find_affected(repo, dependents=False).versions) == {"base@1.1.0"}


def test_changed_image_affects_the_versions_using_it(repo: Path) -> None:
    write(repo, "images/etcd/1.0.0/files/entrypoint", "#!/bin/sh\necho changed\n")
    commit(repo, "change etcd 1.0.0")
    result = find_affected(repo)
    assert result.images == ["etcd@1.0.0"]
    assert reasons(result, "base@1.0.0") == [
        "uses image etcd@1.0.0, which changed (modified images/etcd/1.0.0/files/entrypoint)"]
    assert "base@1.1.0" not in result.versions
    # dependents of base 1.0.0: nomad (~> 1.0), legacy (= 1.0.0), app through nomad
    assert set(result.versions) == {"base@1.0.0", "nomad@1.0.0", "legacy@1.0.0", "app@1.0.0"}


def test_changed_requirement_and_pin(repo: Path) -> None:
    text = REGISTRY.replace('requires = { base = "~> 1.0" }', 'requires = { base = ">= 1.1" }')
    text = text.replace('pins = { base = "1.0.0" }', 'pins = { base = "1.1.0" }')
    write(repo, "blocks.toml", text)
    commit(repo, "nomad needs base 1.1; prod moves to base 1.1.0")
    result = find_affected(repo, dependents=False)
    assert reasons(result, "nomad@1.0.0") == [
        "blocks.toml: requirement on base changed: `~> 1.0` → `>= 1.1`"]
    assert reasons(result, "base@1.1.0") == [
        "blocks.toml: pin of base in environment prod changed: `1.0.0` → `1.1.0`"]
    assert set(result.versions) == {"nomad@1.0.0", "base@1.1.0"}


def test_added_version_and_changed_block_setting(repo: Path) -> None:
    text = REGISTRY.replace("[blocks.standalone]\n", "[blocks.standalone]\nstateful = true\n")
    text += '\n[blocks.app.versions."1.1.0"]\nrequires = { nomad = "~> 1.0" }\n'
    write(repo, "blocks.toml", text)
    write(repo, "blocks/app/1.1.0/main.tf", "# app 1.1.0\n")
    commit(repo, "app 1.1.0; standalone is stateful")
    result = find_affected(repo)
    assert reasons(result, "app@1.1.0") == [
        "its files changed (added blocks/app/1.1.0/main.tf)",
        "blocks.toml: version 1.1.0 added"]
    assert reasons(result, "standalone@1.0.0") == [
        "blocks.toml: block setting `stateful` of standalone changed"]


def test_changed_shared_module_nested(repo: Path) -> None:
    write(repo, "modules/inner/main.tf", "# inner, changed\n")
    write(repo, "modules/unused/main.tf", "# still unused, changed\n")
    commit(repo, "change modules")
    result = find_affected(repo)
    assert reasons(result, "nomad@1.0.0") == [
        "uses shared module modules/inner, which changed (modified modules/inner/main.tf)"]
    assert set(result.versions) == {"nomad@1.0.0", "app@1.0.0"}
    assert result.other_files == ["modules/unused/main.tf"]


def test_deleted_version(repo: Path) -> None:
    text = REGISTRY.replace('[blocks.base.versions."1.1.0"]\nimages = ["etcd@1.1.0"]\n', "")
    write(repo, "blocks.toml", text)
    (repo / "blocks/base/1.1.0/main.tf").unlink()
    commit(repo, "withdraw base 1.1.0")
    result = find_affected(repo)
    assert result.removed_versions == ["base@1.1.0"]
    assert "base@1.1.0" not in result.versions and "base@1.0.0" not in result.versions
    assert reasons(result, "nomad@1.0.0") == [
        "its requirement base ~> 1.0 allowed 1.1.0, which was removed"]
    assert "legacy@1.0.0" not in result.versions     # = 1.0.0 never allowed 1.1.0
    assert "app@1.0.0" in result.versions


def test_deleted_image_folder(repo: Path) -> None:
    for name in ("etcd.pkr.hcl", "files/entrypoint"):
        (repo / "images/etcd/1.1.0" / name).unlink()
    commit(repo, "remove etcd 1.1.0")
    result = find_affected(repo, dependents=False)
    assert result.removed_images == ["etcd@1.1.0"]
    assert reasons(result, "base@1.1.0") == [
        "uses image etcd@1.1.0, whose folder was removed"]


def test_uncommitted_and_untracked_changes_count(repo: Path) -> None:
    write(repo, "blocks/standalone/1.0.0/main.tf", "# edited, not committed\n")
    write(repo, "blocks/app/1.0.0/extra.tf", "# new, untracked\n")
    result = find_affected(repo, dependents=False)
    assert set(result.versions) == {"standalone@1.0.0", "app@1.0.0"}
    assert reasons(result, "app@1.0.0") == ["its files changed (added blocks/app/1.0.0/extra.tf)"]
    # between commits, the working tree does not count
    head = git(repo, "rev-parse", "HEAD")
    assert find_affected(repo, base="main", head=head).versions == {}


def test_default_base_is_the_merge_base_with_main(repo: Path) -> None:
    write(repo, "blocks/app/1.0.0/main.tf", "# app, on feature\n")
    commit(repo, "feature work")
    git(repo, "checkout", "-q", "main")
    write(repo, "blocks/standalone/1.0.0/main.tf", "# standalone, on main later\n")
    commit(repo, "main moves on")
    git(repo, "checkout", "-q", "feature")
    result = find_affected(repo, dependents=False)
    # main's later change is not part of the feature's change
    assert set(result.versions) == {"app@1.0.0"}
    assert result.base == git(repo, "merge-base", "main", "feature")


def test_explicit_base_and_head(repo: Path) -> None:
    first = commit_change(repo, "blocks/app/1.0.0/main.tf", "# one\n")
    second = commit_change(repo, "blocks/standalone/1.0.0/main.tf", "# two\n")
    result = find_affected(repo, base=first, head=second, dependents=False)
    assert set(result.versions) == {"standalone@1.0.0"}
    assert result.head == second


def test_renamed_file_counts_for_both_places(repo: Path) -> None:
    git(repo, "mv", "blocks/app/1.0.0/main.tf", "blocks/standalone/1.0.0/moved.tf")
    commit(repo, "move")
    result = find_affected(repo, dependents=False)
    assert set(result.versions) == {"app@1.0.0", "standalone@1.0.0"}


def test_unknown_revision_is_a_usage_error(repo: Path) -> None:
    with pytest.raises(UsageError, match="does not know the revision 'nope'"):
        find_affected(repo, base="nope")


def test_other_files_are_listed_not_mapped(repo: Path) -> None:
    write(repo, "docs/notes.md", "changed\n")
    result = find_affected(repo)
    assert result.versions == {} and result.other_files == ["docs/notes.md"]


def test_doit_affected_command(repo: Path) -> None:
    write(repo, "blocks/base/1.1.0/main.tf", "# changed\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRABLOCKS_")}
    run = subprocess.run([str(DOIT), "affected", "--json"], cwd=repo, env=env, text=True,
                         capture_output=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert [b["block"] + "@" + b["version"] for b in document["blocks"]] == [
        "base@1.1.0", "nomad@1.0.0", "app@1.0.0"]
    human = subprocess.run([str(DOIT), "affected", "--no-dependents"], cwd=repo, env=env,
                           text=True, capture_output=True, check=False, timeout=60)
    assert human.returncode == 0, human.stderr
    assert "base 1.1.0" in human.stdout and "nomad" not in human.stdout
    assert "its files changed (modified blocks/base/1.1.0/main.tf)" in human.stdout
    bad = subprocess.run([str(DOIT), "affected", "--base", "nope"], cwd=repo, env=env,
                         text=True, capture_output=True, check=False, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "does not know the revision 'nope'" in bad.stderr


def commit_change(repo: Path, relative: str, text: str) -> str:
    write(repo, relative, textwrap.dedent(text))
    return commit(repo, f"change {relative}")

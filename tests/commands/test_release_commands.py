"""`doit release` and `doit new-version` on the example registry: what they write, and their
mistakes answered with a message (exit 2), never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Doit = Callable[..., subprocess.CompletedProcess[str]]


def _usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in text, text


@pytest.mark.parametrize("args, fragments", [
    (("release",), ["name the versions to release", "doit release base@1.1.0"]),
    (("release", "base"), ["name the version to release", "doit release base@1.1.0"]),
    (("release", "bsae@1.0.0"), ["unknown block `bsae`", "did you mean `base`?"]),
    (("release", "base@9.9.9"), ["no version 9.9.9"]),
    (("new-version",), ["takes exactly one block"]),
    (("new-version", "bsae"), ["unknown block `bsae`"]),
    (("new-version", "base", "--version", "1.1.0"), ["already has version 1.1.0",
                                                     "--version 1.2.0"]),
    (("new-version", "base", "--version", "one"), ["--version"]),
    (("new-version", "base", "--from-version", "7.0.0"), ["no version 7.0.0"]),
])
def test_mistakes_are_explained(example_repo: Path, doit: Doit, args: tuple[str, ...],
                                fragments: list[str]) -> None:
    _usage_error(doit(example_repo, *args), *fragments)
    assert not (example_repo / "blocks.lock").exists()


def test_release_then_new_version(example_repo: Path, doit: Doit) -> None:
    released = doit(example_repo, "release", "base@1.0.0", "nomad@1.0.0")
    assert released.returncode == 0, released.stderr
    assert "base 1.0.0: released" in released.stdout and "commit blocks.lock" in released.stdout
    assert '[base."1.0.0"]' in (example_repo / "blocks.lock").read_text()

    cut = doit(example_repo, "new-version", "nomad", "--bump", "patch")
    assert cut.returncode == 0, cut.stderr
    assert (example_repo / "blocks" / "nomad" / "1.0.1" / "variables.tf").is_file()
    toml = (example_repo / "blocks.toml").read_text()
    assert '[blocks.nomad.versions."1.0.1"]\nrequires = { base = "~> 1.0" }\n' \
           'images = ["nomad@1.0.0"]\n' in toml
    checked = doit(example_repo, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 released or deployed block versions frozen" in checked.stdout

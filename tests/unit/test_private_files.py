"""Private files: every writer of the tool creates 0600 files in 0700 folders."""

import os
import stat

import pytest

from infrablocks.private_files import (
    atomic_open,
    open_private,
    private_dir,
    write_atomic,
    write_private_text,
)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_open_private_creates_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with open_private(tmp_path / "a.log", "x") as log:
            log.write("one\n")
        with open_private(tmp_path / "a.log", "a") as log:
            log.write("two\n")
        (tmp_path / "loose").write_text("")
        os.chmod(tmp_path / "loose", 0o644)
        with open_private(tmp_path / "loose", "wb") as handle:
            handle.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.log").read_text() == "one\ntwo\n"
    assert mode(tmp_path / "a.log") == 0o600 and mode(tmp_path / "loose") == 0o600
    with pytest.raises(FileExistsError):
        open_private(tmp_path / "a.log", "x")
    with pytest.raises(ValueError):
        open_private(tmp_path / "b", "r")


def test_private_dir_below_a_base_keeps_the_base_traversable(tmp_path):
    base = tmp_path / "repo" / ".infrablocks"
    logs = private_dir(base / "logs" / "terraform", base=base)
    assert mode(logs) == 0o700 and mode(logs.parent) == 0o700
    assert mode(base) & 0o005 == 0o005          # the local cloud's services pass through
    write_private_text(logs / "x.log", "text")
    assert mode(logs / "x.log") == 0o600


def test_write_atomic_gives_the_mode_asked_for_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "launcher", "#!/bin/sh\n", mode=0o755)
        write_atomic(tmp_path / "record.json", b"{}")                  # default: private
        write_atomic(tmp_path / "blocks.toml", "[blocks]\n", mode=None)  # the umask decides
        os.umask(0o022)
        write_atomic(tmp_path / "blocks.toml", "[blocks]\nx = 1\n", mode=None)
    finally:
        os.umask(old)
    assert mode(tmp_path / "launcher") == 0o755 and mode(tmp_path / "record.json") == 0o600
    assert mode(tmp_path / "blocks.toml") == 0o644
    assert (tmp_path / "blocks.toml").read_text() == "[blocks]\nx = 1\n"
    assert (tmp_path / "record.json").read_bytes() == b"{}"


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_readers_never_see_a_partial_file(tmp_path):
    target = tmp_path / "plan.zip"
    write_atomic(target, b"old")
    with atomic_open(target, binary=True, fsync=True) as handle:
        handle.write(b"new, ")
        assert target.read_bytes() == b"old"          # still the old one while writing
        handle.write(b"whole")
    assert target.read_bytes() == b"new, whole" and mode(target) == 0o600

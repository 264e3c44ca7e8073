"""Private files: every writer of the tool creates 0600 files in 0700 folders."""

import os
import stat

import pytest

from infrablocks.private_files import open_private, private_dir, write_private_text


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

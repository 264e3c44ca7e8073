"""Files the user names for a command to write (--report, --output, --out), and counted nouns."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrablocks.errors import InfrablocksError
from infrablocks.tasks._console import counted
from infrablocks.tasks._output_files import output_path_problem, write_output_file


def test_a_new_or_existing_file_in_a_writable_directory_is_valid(tmp_path: Path) -> None:
    assert output_path_problem(str(tmp_path / "new.json")) is None
    (tmp_path / "old.json").write_text("{}")
    assert output_path_problem(str(tmp_path / "old.json")) is None
    assert list(tmp_path.iterdir()) == [tmp_path / "old.json"]   # the probe file is gone


@pytest.mark.parametrize(("path", "problem"), [
    ("", "expected a file path"),
    ("{tmp}", "is a directory"),
    ("{tmp}/missing/r.json", "does not exist"),
    ("{tmp}/file/r.json", "is not a directory"),
    ("/dev/null", "is not a regular file"),
    ("/proc/version", "cannot create a file in /proc"),
])
def test_what_is_wrong_with_a_path_is_said(tmp_path: Path, path: str, problem: str) -> None:
    (tmp_path / "file").write_text("")
    found = output_path_problem(path.format(tmp=tmp_path))
    assert found is not None and problem in found
    assert not (tmp_path / "missing").exists()


def test_a_failed_write_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InfrablocksError, match="cannot write .*/gone/r.json"):
        write_output_file(tmp_path / "gone" / "r.json", "{}")
    assert not (tmp_path / "gone").exists()
    write_output_file(tmp_path / "r.json", "{}", private=True)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("number", "text"), [(0, "0 blocks"), (1, "1 block"),
                                               (2, "2 blocks")])
def test_counted_nouns(number: int, text: str) -> None:
    assert counted(number, "block") == text
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3, "entry", "entries") == "3 entries"

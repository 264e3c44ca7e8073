"""Terraform-style constraints over semver versions."""

from __future__ import annotations

import random

import pytest
import semver

from infrablocks.versions import (
    ConstraintSyntaxError,
    Version,
    VersionSyntaxError,
    format_versions,
    parse_constraint,
    parse_version,
)


def allowed(constraint: str, *versions: str) -> list[str]:
    parsed = parse_constraint(constraint)
    return [v for v in versions if parsed.allows(parse_version(v))]


CANDIDATES = ("0.9.0", "1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0",
              "2.0.0", "2.1.0")


@pytest.mark.parametrize(("constraint", "expected"), [
    ("= 1.2.0", ["1.2.0"]),
    ("1.2.0", ["1.2.0"]),
    ("=1.2.0", ["1.2.0"]),
    ("!= 1.2.0", [v for v in CANDIDATES if v != "1.2.0"]),
    ("> 1.2.3", ["1.2.9", "1.3.0", "1.10.0", "2.0.0", "2.1.0"]),
    (">= 1.2.3", ["1.2.3", "1.2.9", "1.3.0", "1.10.0", "2.0.0", "2.1.0"]),
    ("< 1.2.0", ["0.9.0", "1.0.0", "1.1.0"]),
    ("<= 1.2.0", ["0.9.0", "1.0.0", "1.1.0", "1.2.0"]),
    ("~> 1.2", ["1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0"]),
    ("~> 1.2.3", ["1.2.3", "1.2.9"]),
    ("~> 1.2.0", ["1.2.0", "1.2.3", "1.2.9"]),
    ("~> 1.0", ["1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0"]),
    ("~> 1", ["1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0", "2.0.0", "2.1.0"]),
    ("~> 2.0", ["2.0.0", "2.1.0"]),
    (">= 1.0, < 2.0", ["1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0"]),
    (">= 1.0,< 2.0,!= 1.2.3", ["1.0.0", "1.1.0", "1.2.0", "1.2.9", "1.3.0", "1.10.0"]),
    ("~> 1.2, != 1.3.0", ["1.2.0", "1.2.3", "1.2.9", "1.10.0"]),
    (">= 2", ["2.0.0", "2.1.0"]),
    ("> 3.0", []),
])
def test_operators(constraint: str, expected: list[str]) -> None:
    assert allowed(constraint, *CANDIDATES) == expected


def test_pessimistic_upper_bounds_are_exclusive() -> None:
    assert allowed("~> 1.2", "1.99.99", "2.0.0", "2.0.0-rc.1") == ["1.99.99"]
    assert allowed("~> 1.2.3", "1.2.99", "1.3.0", "1.3.0-beta") == ["1.2.99"]
    assert allowed("~> 0.1", "0.1.0", "0.9.0", "1.0.0") == ["0.1.0", "0.9.0"]


def test_prereleases_need_a_prerelease_clause_of_the_same_version() -> None:
    assert allowed(">= 1.0.0", "1.1.0-rc.1", "1.1.0") == ["1.1.0"]
    assert allowed("= 1.1.0-rc.1", "1.1.0-rc.1", "1.1.0") == ["1.1.0-rc.1"]
    assert allowed(">= 1.1.0-rc.1", "1.1.0-rc.1", "1.1.0-rc.2", "1.2.0-rc.1", "1.1.0") == [
        "1.1.0-rc.1", "1.1.0-rc.2", "1.1.0"]


@pytest.mark.parametrize("text", ["", "   ", "== 1.0.0", "=> 1.0", ">= one", "~>", ">= 1.0,",
                                  "1.0.0.0", ">= 1.0 < 2.0", "^1.2", "latest"])
def test_invalid_constraints_say_what_is_valid(text: str) -> None:
    with pytest.raises(ConstraintSyntaxError) as caught:
        parse_constraint(text)
    message = str(caught.value)
    assert "`=`" in message or "Terraform" in message or "empty" in message


def test_double_equals_gets_a_specific_hint() -> None:
    with pytest.raises(ConstraintSyntaxError, match="as `=`, not `==`"):
        parse_constraint("== 1.0.0")


def test_non_string_constraint() -> None:
    with pytest.raises(ConstraintSyntaxError, match="expected a string"):
        parse_constraint(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1.0", "1", "v1.0.0", "01.0.0", "1.0.0.0", "", "x"])
def test_invalid_versions(text: str) -> None:
    with pytest.raises(VersionSyntaxError, match="MAJOR.MINOR.PATCH"):
        parse_version(text)


def test_constraint_text_is_normalised_for_messages() -> None:
    assert str(parse_constraint(">=1.0,   <2.0")) == ">=1.0, <2.0"
    assert str(parse_constraint("~> 1.2")) == "~> 1.2"


def test_versions_behave_like_semver() -> None:
    texts = ["1.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
             "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "0.9.9", "1.10.0", "1.2.0",
             "2.0.0", "1.0.1"]
    rng = random.Random(7)
    shuffled = texts[:]
    rng.shuffle(shuffled)
    ours = [str(v) for v in sorted(parse_version(t) for t in shuffled)]
    theirs = [str(v) for v in sorted(semver.Version.parse(t) for t in shuffled)]
    assert ours == theirs
    plain = semver.Version.parse("1.2.0")
    mine = parse_version("1.2.0")
    assert mine == plain and plain == mine and hash(mine) == hash(plain)
    assert {plain: "x"}[mine] == "x"
    assert isinstance(mine, Version)
    assert mine < semver.Version.parse("1.10.0")
    assert repr(mine).startswith("Version(")


def test_format_versions_sorts() -> None:
    assert format_versions([parse_version("1.10.0"), parse_version("1.2.0")]) == "1.2.0, 1.10.0"
    assert format_versions([]) == "(none)"

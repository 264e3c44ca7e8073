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
    ("~> 1", ["1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0"]),  # issue 10
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


def test_prereleases_are_only_chosen_when_named_exactly() -> None:
    # Terraform (go-versions' MeetingConstraints, also applied to module pre-releases): an
    # inexact operator never selects a pre-release, even one whose clause has a pre-release.
    assert allowed(">= 1.0.0", "1.1.0-rc.1", "1.1.0") == ["1.1.0"]
    assert allowed("= 1.1.0-rc.1", "1.1.0-rc.1", "1.1.0") == ["1.1.0-rc.1"]
    assert allowed("1.1.0-rc.1", "1.1.0-rc.1", "1.1.0") == ["1.1.0-rc.1"]
    assert allowed(">= 1.1.0-rc.1", "1.1.0-rc.1", "1.1.0-rc.2", "1.2.0-rc.1", "1.1.0") == [
        "1.1.0"]
    assert allowed("= 1.1.0-rc.1, < 1.1.0", "1.1.0-rc.1", "1.1.0") == ["1.1.0-rc.1"]
    assert allowed("= 1.1.0-rc.1, > 1.1.0", "1.1.0-rc.1", "1.1.0") == []


def test_one_number_pessimistic_stays_on_its_major_version() -> None:
    # Issue 10: `lib = "~> 1"` resolved to lib 2.0.0.
    assert allowed("~> 1", "0.9.0", "1.0.0", "1.99.0", "2.0.0", "2.0.0-rc.1") == [
        "1.0.0", "1.99.0"]
    assert allowed("~> 0", "0.0.1", "0.9.0", "1.0.0") == ["0.0.1", "0.9.0"]


@pytest.mark.parametrize("text", ["", "   ", "== 1.0.0", "=> 1.0", ">= one", "~>", ">= 1.0,",
                                  "1.0.0.0", ">= 1.0 < 2.0", "^1.2", "latest", ">=  1.0",
                                  "v1.0", ">= 1.0, < v2.0", "1.*"])
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


# --- The constraint cases Terraform's own version-constraint libraries test ---------------------
#
# Terraform parses provider constraints with apparentlymart/go-versions (ParseRubyStyleMulti,
# MeetingConstraints) and module constraints with hashicorp/go-version (NewConstraint, Check),
# the latter plus go-versions' pre-release rule. infrablocks follows go-versions (see
# docs/registry.md). The rows below are those libraries' test tables, ported: the expected sets
# are written with the same set operations as upstream, evaluated with semver's own precedence
# (not with infrablocks' code) over CANDIDATES_ALL.

SV = semver.Version
CANDIDATES_ALL = ("0.9.0", "1.0.0-beta1", "1.0.0-beta.1", "1.0.0", "1.0.1", "1.0.4", "1.0.7",
                  "1.0.8", "1.1.0", "1.1.5", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.10.0",
                  "2.0.0-rc.1", "2.0.0", "2.1.0-beta", "2.1.0", "2.1.1-beta", "2.1.1",
                  "2.2.0-alpha", "2.2.0", "3.0.0")


def _v(text: str) -> SV:
    return SV.parse(text)


def Released(v: SV) -> bool:  # noqa: N802 - upstream names
    return not v.prerelease


def All(v: SV) -> bool:  # noqa: N802
    return True


def Only(text: str):  # noqa: N802, ANN201
    return lambda v: v.compare(_v(text)) == 0


def AtLeast(text: str):  # noqa: N802, ANN201
    return lambda v: v.compare(_v(text)) >= 0


def AtMost(text: str):  # noqa: N802, ANN201
    return lambda v: v.compare(_v(text)) <= 0


def NewerThan(text: str):  # noqa: N802, ANN201
    return lambda v: v.compare(_v(text)) > 0


def OlderThan(text: str):  # noqa: N802, ANN201
    return lambda v: v.compare(_v(text)) < 0


def Intersection(*sets):  # noqa: N802, ANN002, ANN201
    return lambda v: all(s(v) for s in sets)


def Union(*sets):  # noqa: N802, ANN002, ANN201
    return lambda v: any(s(v) for s in sets)


def Subtract(whole, part):  # noqa: N802, ANN001, ANN201
    return lambda v: whole(v) and not part(v)


# versions/parse_test.go TestMeetingConstraintsRuby (every row), plus the pre-release rows of
# TestMeetingConstraintsCanon written in the Ruby style Terraform uses.
MEETING_CONSTRAINTS_RUBY = [
    ("1.0.0", Intersection(Released, Only("1.0.0"))),
    ("= 1.0.0", Intersection(Released, Only("1.0.0"))),
    ("!= 1.0.0", Intersection(Released, Subtract(All, Only("1.0.0")))),
    ("> 1.0.0", Intersection(Released, NewerThan("1.0.0"))),
    ("> 1.0", Intersection(Released, NewerThan("1.0.0"))),
    ("< 1.0.0", Intersection(Released, OlderThan("1.0.0"))),
    (">= 1.0.0", Intersection(Released, AtLeast("1.0.0"))),
    ("<= 1.0.0", Intersection(Released, AtMost("1.0.0"))),
    ("~> 1.2.3", Intersection(Released, AtLeast("1.2.3"), OlderThan("1.3.0"))),
    ("~> 1.2", Intersection(Released, AtLeast("1.2.0"), OlderThan("2.0.0"))),
    ("~> 1", Intersection(Released, AtLeast("1.0.0"), OlderThan("2.0.0"))),
    (">= 1, < 2", Intersection(Released, AtLeast("1.0.0"), OlderThan("2.0.0"))),
    ("1.0.0, 2.0.0", Intersection(Released, Only("1.0.0"), Only("2.0.0"))),
    ("1.0.0, 1.0.0", Intersection(Released, Only("1.0.0"), Only("1.0.0"))),
    ("1.0.0, != 1.0.0", Intersection(Released, Only("1.0.0"), Subtract(All, Only("1.0.0")))),
    ("1.0.0-beta1, != 1.0.0-beta1",
     Intersection(Released, Only("1.0.0-beta1"), Subtract(All, Only("1.0.0-beta1")))),
    # TestMeetingConstraintsCanon `1.0-beta.1`: the exact pre-release, requested
    ("1.0-beta.1", Union(Only("1.0.0-beta.1"), Intersection(Released, Only("1.0.0-beta.1")))),
    ("= 1.0.0-beta1", Union(Only("1.0.0-beta1"), Intersection(Released, Only("1.0.0-beta1")))),
]


@pytest.mark.parametrize(("constraint", "want"), MEETING_CONSTRAINTS_RUBY,
                         ids=[row[0] for row in MEETING_CONSTRAINTS_RUBY])
def test_go_versions_meeting_constraints(constraint: str, want) -> None:  # noqa: ANN001
    expected = [v for v in CANDIDATES_ALL if want(_v(v))]
    assert allowed(constraint, *CANDIDATES_ALL) == expected


# hashicorp/go-version constraint_test.go TestConstraintCheck, every row with three-number
# versions: (constraint, version, infrablocks = go-versions, go-version's own answer). The rows
# where the two libraries disagree are the pre-release ones under inexact operators; go-versions
# only lets a pre-release through when it is named exactly, which Terraform also applies to
# module pre-releases (internal/initwd/module_install.go), so it is Terraform's answer for both.
GO_VERSION_CHECK = [
    (">= 1.0, < 1.2", "1.1.5", True, True),
    ("< 1.0, < 1.2", "1.1.5", False, False),
    ("= 1.0", "1.1.5", False, False),
    ("= 1.0", "1.0.0", True, True),
    ("1.0", "1.0.0", True, True),
    ("~> 1.0", "2.0.0", False, False),
    ("~> 1.0", "1.1.0", True, True),
    ("~> 1.0", "1.2.3", True, True),
    ("~> 1.0.0", "1.2.3", False, False),
    ("~> 1.0.0", "1.0.7", True, True),
    ("~> 1.0.0", "1.1.0", False, False),
    ("~> 1.0.7", "1.0.4", False, False),
    ("~> 1.0.7", "1.0.7", True, True),
    ("~> 1.0.7", "1.0.8", True, True),
    ("~> 2.0", "2.1.0-beta", False, False),
    ("~> 2.1.0-a", "2.2.0", False, False),
    ("~> 2.1.0-a", "2.1.0", True, False),
    ("~> 2.1.0-a", "2.1.0-beta", False, True),
    ("~> 2.1.0-a", "2.2.0-alpha", False, False),
    ("> 2.0", "2.1.0-beta", False, False),
    (">= 2.1.0-a", "2.1.0-beta", False, True),
    (">= 2.1.0-a", "2.1.1-beta", False, False),
    (">= 2.0.0", "2.1.0-beta", False, False),
    (">= 2.1.0-a", "2.1.1", True, True),
    (">= 2.1.0-a", "2.1.0", True, True),
    ("<= 2.1.0-a", "2.0.0", True, True),
    # Not in go-version's table, read from its constraintPessimistic: a one-number `~>` has no
    # upper bound there (segments are padded to three). go-versions bounds it (issue 10).
    ("~> 1", "2.0.0", False, True),
]


@pytest.mark.parametrize(("constraint", "version", "expected", "go_version"), GO_VERSION_CHECK,
                         ids=[f"{c} @ {v}" for c, v, _, _ in GO_VERSION_CHECK])
def test_go_version_constraint_check(constraint: str, version: str, expected: bool,
                                     go_version: bool) -> None:
    assert parse_constraint(constraint).allows(parse_version(version)) is expected
    if expected != go_version:  # the libraries only disagree on pre-releases and `~> N`
        assert "-" in constraint + version or constraint == "~> 1"


# Syntax: go-versions constraints/ruby_style_test.go TestParseRubyStyle and
# TestParseRubyStyleMulti, go-version TestNewConstraint. (text, clauses as "OP X.Y.Z" or the
# start of the error.) Spacing, the `v` prefix, operators, numbers, wildcards and commas.
SYNTAX = [
    ("1", ["= 1"]),
    ("1.1", ["= 1.1"]),
    ("1.1.1", ["= 1.1.1"]),
    ("1.0.0.0", "has too many numbers"),
    ("v1.0.0", "a `v` prefix is not used"),
    (">= v1.0.0", "a `v` prefix is not used"),
    ("~> v1.1.1", "a `v` prefix is not used"),
    (">= 1.0, < v2.0", "a `v` prefix is not used"),
    ("1.0.0-beta2", ["= 1.0.0-beta2"]),
    ("1.0-beta2", ["= 1.0.0-beta2"]),
    ("1.0.0-beta.2", ["= 1.0.0-beta.2"]),
    ("1.0.0+foo", ["= 1.0.0"]),
    ("1.0.0+foo.bar", ["= 1.0.0"]),
    ("1.0.0-beta1+foo.bar", ["= 1.0.0-beta1"]),
    ("> 1.1.1", ["> 1.1.1"]),
    (">1.1.1", ["> 1.1.1"]),
    (">= 1.1.1", [">= 1.1.1"]),
    (">=1.1.1", [">= 1.1.1"]),
    ("=> 1.1.1", "invalid operator `=>`; did you mean `>=`?"),
    ("=>1.1.1", "invalid operator `=>`; did you mean `>=`?"),
    ("< 1.1.1", ["< 1.1.1"]),
    ("<= 1.1.1", ["<= 1.1.1"]),
    ("=< 1.1.1", "invalid operator `=<`; did you mean `<=`?"),
    ("~> 1.1.1", ["~> 1.1.1"]),
    ("~> 1.1", ["~> 1.1"]),
    ("~> 1", ["~> 1"]),
    ("= 1.1.1", ["= 1.1.1"]),
    ("!= 1.1.1", ["!= 1.1.1"]),
    ("=  1.1.1", "only one space is expected after the operator `=`"),
    ("garbage", "`garbage` is not a version"),
    ("& 1.1.0", "invalid operator `&`"),
    ("1.*.*", "uses a wildcard"),
    ("1.0.x", "uses a wildcard"),
    (">= 1.x", "uses a wildcard"),
    ("1.0 || 2.0", "missing comma after `1.0`"),
    ("1.0.0 - 2.0.0", "missing comma after `1.0.0`"),
    (">= 1.0 < 2", "missing comma after `>= 1.0`"),
    ("1.0.0, 2.0.0", ["= 1.0.0", "= 2.0.0"]),
    (">= 1.0, < 2", [">= 1.0", "< 2"]),
    (">= 1.2", [">= 1.2"]),
    ("1.0", ["= 1.0"]),
    (">= 1.2, < 1.0", [">= 1.2", "< 1.0"]),
    ("11387778780781445675529500000000000000000", "out of range"),
    ("  >= 1.0  ,  < 2.0  ", [">= 1.0", "< 2.0"]),
    ("", "empty constraint"),  # go-versions' Multi reads "" as no constraint; refused here
]


@pytest.mark.parametrize(("text", "expected"), SYNTAX, ids=[repr(row[0]) for row in SYNTAX])
def test_constraint_syntax(text: str, expected: list[str] | str) -> None:
    if isinstance(expected, list):
        assert [str(c) for c in parse_constraint(text).clauses] == expected
        return
    with pytest.raises(ConstraintSyntaxError) as caught:
        parse_constraint(text)
    assert expected in str(caught.value)
    if text.strip() and "`==`" not in str(caught.value):
        assert f"`{text.strip()}`" in str(caught.value)  # the constraint as written
        assert "Terraform version constraint such as" in str(caught.value)  # what is valid



def test_precedence_key_sorts_like_semver() -> None:
    from infrablocks.versions import precedence_key

    texts = ["1.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.11", "1.0.0-beta.2",
             "0.9.9", "1.10.0", "1.2.0"]
    ours = sorted(texts, key=lambda t: precedence_key(parse_version(t)))
    plain = sorted(texts, key=lambda t: precedence_key(semver.Version.parse(t)))
    assert ours == plain == [str(v) for v in sorted(semver.Version.parse(t) for t in texts)]

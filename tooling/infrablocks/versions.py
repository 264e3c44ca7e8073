"""Terraform's version constraints over semantic versions.

Block versions are full semver (``1.2.0``, ``2.0.0-rc.1``). Requirements use the constraint
syntax and meaning of Terraform's provider version constraints (``required_providers``), which
Terraform parses with apparentlymart/go-versions (``constraints.ParseRubyStyleMulti`` and
``versions.MeetingConstraints``):

- ``= 1.2.0`` (or a bare ``1.2.0``), ``!= 1.2.0``, ``>``, ``>=``, ``<``, ``<=``; a comma between
  clauses means "and". Versions inside a constraint may be partial: ``>= 1.2`` is ``>= 1.2.0``.
- ``~>`` lets only the right-most written number grow: ``~> 1.2.3`` is ``>= 1.2.3, < 1.3.0``;
  ``~> 1.2`` is ``>= 1.2.0, < 2.0.0``; ``~> 1`` is ``>= 1.0.0, < 2.0.0``.
- A pre-release version is allowed only when an ``=`` clause names it exactly (and the other
  clauses allow it): ``>= 1.0.0`` never selects ``1.1.0-rc.1``; ``= 1.1.0-rc.1`` does.
- One space at most between an operator and its version, no ``v`` prefix, at most three numbers.

Terraform's module constraints use a second library (hashicorp/go-version) for release versions,
where ``~> 1`` has no upper bound; docs/registry.md says where the two differ and why this one
was chosen. infrablocks is stricter than go-versions in two places: an empty constraint and a
trailing comma are errors. Build metadata (``+build``) is accepted and ignored, as SemVer
precedence ignores it.

semver's own ``Version.match`` knows no ``~>``, so the operators are implemented here on
``semver.Version`` comparisons. Parsing is cached: registries repeat the same few strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from semver import Version

__all__ = [
    "Clause",
    "Constraint",
    "ConstraintSyntaxError",
    "OPERATORS",
    "Version",
    "VersionSyntaxError",
    "format_versions",
    "parse_constraint",
    "parse_version",
    "precedence_key",
]

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~>")

CONSTRAINT_HELP = (
    "a Terraform version constraint such as `~> 1.2`, `>= 1.0, < 2.0`, `= 1.4.1` or `!= 1.3.0` "
    "(operators: " + ", ".join(f"`{op}`" for op in OPERATORS) + "; comma means and)"
)
VERSION_HELP = "a semantic version MAJOR.MINOR.PATCH such as `1.2.0` (optionally `-prerelease`)"


class VersionSyntaxError(ValueError):
    """A string that is not a semantic version. The message says what would be valid."""


class ConstraintSyntaxError(ValueError):
    """A string that is not a Terraform version constraint. The message says what is valid."""


_PARTIAL = re.compile(
    r"^(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?)?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
# go-versions' scanner: an operator (anything but letters, digits, spaces, `.` and `*`), a
# separator (spaces, or a `v` someone meant as a prefix), then the version.
_CLAUSE = re.compile(r"^(?P<op>[^0-9A-Za-z\s.*]*)(?P<sep>[\sv]*)(?P<version>.*)$", re.DOTALL)
_MAX_NUMBER = 2**64 - 1  # go-versions parses each number as a uint64
_OPERATOR_TYPOS = {"=>": ">=", "=<": "<=", "==": "="}


class _Version(Version):
    """A ``semver.Version`` with its precedence key, hash and text computed once.

    semver compares through a generic decorator (~2 µs per comparison); registries with
    100,000 block versions sort, hash and compare them a lot. Instances are only created by
    ``parse_version`` / constraint parsing and shared (semver versions are immutable).
    Comparisons with a plain ``Version`` fall back to semver's.
    """

    __slots__ = ("_key", "_hash", "_text")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pre = self.prerelease
        pre_key: tuple[Any, ...] = (1,) if not pre else (0, *(
            (0, int(part)) if part.isdigit() else (1, part) for part in pre.split(".")))
        self._key = (self.major, self.minor, self.patch, pre_key)
        self._hash = hash((self.major, self.minor, self.patch, pre))
        self._text = super().__str__()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return super().__repr__().removeprefix("_")

    def __str__(self) -> str:
        return self._text

    def __eq__(self, other: Any) -> bool:
        if type(other) is _Version:
            return self._key == other._key
        return super().__eq__(other)

    def __ne__(self, other: Any) -> bool:
        if type(other) is _Version:
            return self._key != other._key
        return super().__ne__(other)

    def __lt__(self, other: Any) -> bool:
        if type(other) is _Version:
            return self._key < other._key
        return super().__lt__(other)

    def __le__(self, other: Any) -> bool:
        if type(other) is _Version:
            return self._key <= other._key
        return super().__le__(other)

    def __gt__(self, other: Any) -> bool:
        if type(other) is _Version:
            return self._key > other._key
        return super().__gt__(other)

    def __ge__(self, other: Any) -> bool:
        if type(other) is _Version:
            return self._key >= other._key
        return super().__ge__(other)


_PARSED: dict[str, Version] = {}


def parse_version(text: str) -> Version:
    """A full semantic version, e.g. ``1.2.0``. Raises ``VersionSyntaxError``.

    Cached: the same string gives the same (immutable) object.
    """
    try:
        return _PARSED[text]
    except (KeyError, TypeError):
        pass
    if not isinstance(text, str):
        raise VersionSyntaxError(f"expected a string, got {type(text).__name__}: {VERSION_HELP}")
    try:
        version = _Version.parse(text.strip())
    except (ValueError, TypeError):
        raise VersionSyntaxError(f"`{text}` is not {VERSION_HELP}") from None
    if len(_PARSED) < 100_000:
        _PARSED[text] = version
    return version


def precedence_key(version: Version) -> tuple[Any, ...]:
    """A tuple that sorts like SemVer precedence (C-level comparisons: for sorting many
    versions). Computed once for versions from ``parse_version``."""
    key = getattr(version, "_key", None)
    if key is None:
        pre = version.prerelease
        key = (version.major, version.minor, version.patch, (1,) if not pre else (0, *(
            (0, int(part)) if part.isdigit() else (1, part) for part in pre.split("."))))
    return key


@dataclass(frozen=True)
class Clause:
    """One ``OP VERSION`` part of a constraint.

    ``segments`` is how many of major/minor/patch were written (``~>`` depends on it).
    """

    op: str
    version: Version
    segments: int

    def admits(self, version: Version) -> bool:
        """The comparison alone, by SemVer precedence. Whether a pre-release may be chosen at
        all is decided by the whole constraint (``Constraint.allows``)."""
        op, bound = self.op, self.version
        if op == "=":
            return version == bound
        if op == "!=":
            return version != bound
        if op == ">":
            return version > bound
        if op == ">=":
            return version >= bound
        if op == "<":
            return version < bound
        if op == "<=":
            return version <= bound
        # "~>": only the right-most written number may grow (go-versions: patch-only with
        # three numbers, minor-only with one or two).
        return bound <= version < self.upper_bound()

    def upper_bound(self) -> Version:
        """For ``~>``: the first version it excludes (``~> 1.2.3`` → 1.3.0, ``~> 1`` → 2.0.0)."""
        bound = self.version
        if self.segments == 3:
            return _version(bound.major, bound.minor + 1, 0)
        return _version(bound.major + 1, 0, 0)

    def __str__(self) -> str:
        written = ".".join(str(p) for p in (self.version.major, self.version.minor,
                                            self.version.patch)[: self.segments])
        if self.version.prerelease:
            written = f"{self.version.major}.{self.version.minor}.{self.version.patch}" \
                      f"-{self.version.prerelease}"
        return f"{self.op} {written}"


_UPPER: dict[tuple[int, int, int], Version] = {}


def _version(major: int, minor: int, patch: int) -> Version:
    key = (major, minor, patch)
    version = _UPPER.get(key)
    if version is None:
        version = _UPPER[key] = _Version(major, minor, patch)
    return version


@dataclass(frozen=True)
class Constraint:
    """A conjunction of clauses; ``text`` is what the user wrote (kept for messages)."""

    text: str
    clauses: tuple[Clause, ...]

    def allows(self, version: Version) -> bool:
        """Whether ``version`` meets every clause. A pre-release must also be named exactly by
        an ``=`` clause (go-versions' ``MeetingConstraints``: pre-releases only on request)."""
        if version.prerelease and not any(
                clause.op == "=" and clause.version == version for clause in self.clauses):
            return False
        return all(clause.admits(version) for clause in self.clauses)

    # Equal texts (normalised) are equal constraints; hashing the text alone is cheap.
    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraint) and other.text == self.text

    def filter(self, versions: Iterable[Version]) -> list[Version]:
        return [v for v in versions if self.allows(v)]

    def __str__(self) -> str:
        return self.text

    @classmethod
    def exactly(cls, version: Version) -> Constraint:
        return cls(f"= {version}", (Clause("=", version, 3),))


_CONSTRAINTS: dict[str, Constraint] = {}


def parse_constraint(text: str) -> Constraint:
    """Parse a Terraform version constraint. Raises ``ConstraintSyntaxError`` saying what is
    wrong and what would be valid. Cached."""
    try:
        return _CONSTRAINTS[text]
    except (KeyError, TypeError):
        pass
    constraint = _parse_constraint(text)
    if len(_CONSTRAINTS) < 100_000:
        _CONSTRAINTS[text] = constraint
    return constraint


def _parse_constraint(text: str) -> Constraint:
    if not isinstance(text, str):
        raise ConstraintSyntaxError(
            f"expected a string, got {type(text).__name__}: {CONSTRAINT_HELP}")
    if not text.strip():
        raise ConstraintSyntaxError(f"empty constraint: expected {CONSTRAINT_HELP}")
    clauses = tuple(_parse_clause(part.strip(), text) for part in text.split(","))
    return Constraint(" ".join(text.split()), clauses)


def _parse_clause(part: str, whole: str) -> Clause:
    """One clause, with go-versions' rules and its error cases (each with what is valid)."""

    where = f"`{whole.strip()}`" + (f", clause `{part}`" if part and part != whole.strip()
                                      else "")

    def fail(reason: str) -> ConstraintSyntaxError:
        return ConstraintSyntaxError(f"{where}: {reason}: expected {CONSTRAINT_HELP}")

    if not part:
        raise fail("a clause is empty (a comma with no `OPERATOR VERSION` after it)")
    match = _CLAUSE.match(part)
    assert match is not None  # every group may be empty
    op, sep, rest = match.group("op"), match.group("sep"), match.group("version")
    if op == "==":
        raise ConstraintSyntaxError(
            f"`{whole.strip()}`: Terraform constraints write equality as `=`, not `==`")
    if op in _OPERATOR_TYPOS:
        raise fail(f"invalid operator `{op}`; did you mean `{_OPERATOR_TYPOS[op]}`?")
    if op and op not in OPERATORS:
        raise fail(f"invalid operator `{op}`")
    written, _, tail = rest.partition(" ")
    tail = tail.strip()
    if "v" in sep or tail.startswith("v"):
        if _PARTIAL.match(written) or tail.startswith("v"):
            raise fail("a `v` prefix is not used in version constraints")
        written, sep = sep.strip() + written, sep.replace("v", "")
    if sep not in ("", " "):
        raise fail(f"only one space is expected after the operator `{op}`")
    if not written:
        raise fail(f"no version after the operator `{op}`")
    parts = _PARTIAL.match(written)
    if not parts:
        raise fail(_not_a_version(written))
    if tail:
        raise fail(f"missing comma after `{op}{sep}{written}` (clauses are separated by commas)")
    if any(int(number) > _MAX_NUMBER for number in parts.group("major", "minor", "patch")
           if number is not None):
        raise fail(f"`{written}` has a number out of range (at most {_MAX_NUMBER})")
    segments = 1 + (parts.group("minor") is not None) + (parts.group("patch") is not None)
    version = _Version(int(parts.group("major")), int(parts.group("minor") or 0),
                       int(parts.group("patch") or 0), parts.group("pre"))
    return Clause(op or "=", version, segments)


def _not_a_version(written: str) -> str:
    numbers = re.match(r"^[0-9*xX]+(?:\.[0-9*xX]+)*", written)
    if numbers and numbers.group().count(".") >= 3:
        return f"`{written}` has too many numbers (at most three: major, minor, patch)"
    if numbers and re.search(r"[*xX]", numbers.group()):
        return (f"`{written}` uses a wildcard: omit the numbers that may vary instead "
                f"(`~> 1.2` allows any 1.x from 1.2.0)")
    return f"`{written}` is not a version"


def format_versions(versions: Iterable[Version]) -> str:
    """``1.0.0, 1.1.0`` in ascending order (for messages)."""
    return ", ".join(str(v) for v in sorted(versions)) or "(none)"

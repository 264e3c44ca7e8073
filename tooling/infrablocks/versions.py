"""Terraform-style version constraints over semantic versions.

Block versions are full semver (``1.2.0``, ``2.0.0-rc.1``). Requirements use the constraint
syntax Terraform users already write: ``= 1.2.0``, ``!= 1.2.0``, ``>``, ``>=``, ``<``, ``<=``,
``~> 1.2`` (>= 1.2.0, < 2.0.0), ``~> 1.2.3`` (>= 1.2.3, < 1.3.0), ``~> 1`` (>= 1.0.0), a comma
between clauses meaning "and", and a bare version meaning ``=``. Versions inside a constraint may
be partial (``>= 1.2`` is ``>= 1.2.0``).

Pre-releases follow Terraform (hashicorp/go-version): a clause without a pre-release never
matches a pre-release version, and a clause with one only matches pre-releases of the same
``major.minor.patch``.

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
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?)?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_CLAUSE = re.compile(r"^\s*(?P<op>~>|!=|>=|<=|==|=|>|<)?\s*(?P<version>\S*)\s*$")


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

    def __eq__(self, other: Any) -> bool:  # type: ignore[override]
        if type(other) is _Version:
            return self._key == other._key
        return super().__eq__(other)

    def __ne__(self, other: Any) -> bool:  # type: ignore[override]
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


@dataclass(frozen=True)
class Clause:
    """One ``OP VERSION`` part of a constraint.

    ``segments`` is how many of major/minor/patch were written (``~>`` depends on it).
    """

    op: str
    version: Version
    segments: int

    def allows(self, version: Version) -> bool:
        if not self._prerelease_compatible(version):
            return False
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
        # "~>": only the right-most written component may increase.
        if version < bound:
            return False
        if self.segments == 1:
            return True
        if self.segments == 2:
            return version.major == bound.major
        return version.major == bound.major and version.minor == bound.minor

    def _prerelease_compatible(self, version: Version) -> bool:
        if not version.prerelease:
            return True
        if not self.version.prerelease:
            return False
        return (version.major, version.minor, version.patch) == (
            self.version.major, self.version.minor, self.version.patch)

    def __str__(self) -> str:
        written = ".".join(str(p) for p in (self.version.major, self.version.minor,
                                            self.version.patch)[: self.segments])
        if self.version.prerelease:
            written = f"{self.version.major}.{self.version.minor}.{self.version.patch}" \
                      f"-{self.version.prerelease}"
        return f"{self.op} {written}"


@dataclass(frozen=True)
class Constraint:
    """A conjunction of clauses; ``text`` is what the user wrote (kept for messages)."""

    text: str
    clauses: tuple[Clause, ...]

    def allows(self, version: Version) -> bool:
        return all(clause.allows(version) for clause in self.clauses)

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
    """Parse a Terraform version constraint. Raises ``ConstraintSyntaxError``. Cached."""
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
    clauses = tuple(_parse_clause(part, text) for part in text.split(","))
    return Constraint(" ".join(text.split()), clauses)


def _parse_clause(part: str, whole: str) -> Clause:
    match = _CLAUSE.match(part)
    if not match or not match.group("version"):
        where = f"`{whole}`: " if part.strip() != whole.strip() else ""
        raise ConstraintSyntaxError(
            f"{where}`{part.strip()}` is not `OPERATOR VERSION`: expected {CONSTRAINT_HELP}")
    op = match.group("op") or "="
    if op == "==":
        raise ConstraintSyntaxError(
            f"`{whole}`: Terraform constraints write equality as `=`, not `==`")
    written = match.group("version")
    parts = _PARTIAL.match(written)
    if not parts:
        raise ConstraintSyntaxError(
            f"`{whole}`: `{written}` is not a version: expected {CONSTRAINT_HELP}")
    segments = 1 + (parts.group("minor") is not None) + (parts.group("patch") is not None)
    version = _Version(int(parts.group("major")), int(parts.group("minor") or 0),
                       int(parts.group("patch") or 0), parts.group("pre"))
    return Clause(op, version, segments)


def format_versions(versions: Iterable[Version]) -> str:
    """``1.0.0, 1.1.0`` in ascending order (for messages)."""
    return ", ".join(str(v) for v in sorted(versions)) or "(none)"

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
from functools import lru_cache

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


@lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """A full semantic version, e.g. ``1.2.0``. Raises ``VersionSyntaxError``."""
    if not isinstance(text, str):
        raise VersionSyntaxError(f"expected a string, got {type(text).__name__}: {VERSION_HELP}")
    try:
        return Version.parse(text.strip())
    except (ValueError, TypeError):
        raise VersionSyntaxError(f"`{text}` is not {VERSION_HELP}") from None


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

    def filter(self, versions: Iterable[Version]) -> list[Version]:
        return [v for v in versions if self.allows(v)]

    def __str__(self) -> str:
        return self.text

    @classmethod
    def exactly(cls, version: Version) -> Constraint:
        return cls(f"= {version}", (Clause("=", version, 3),))


@lru_cache(maxsize=8192)
def parse_constraint(text: str) -> Constraint:
    """Parse a Terraform version constraint. Raises ``ConstraintSyntaxError``."""
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
    version = Version(int(parts.group("major")), int(parts.group("minor") or 0),
                      int(parts.group("patch") or 0), parts.group("pre"))
    return Clause(op, version, segments)


def format_versions(versions: Iterable[Version]) -> str:
    """``1.0.0, 1.1.0`` in ascending order (for messages)."""
    return ", ".join(str(v) for v in sorted(versions)) or "(none)"

"""A block's Terraform outputs, with the sensitive ones kept out of every human-facing rendering.

Terraform marks an output ``sensitive`` as a whole (the flag is per output, never per nested
field), so masking is per output name. :class:`Outputs` behaves as a read-only mapping of the real
values — that is what a dependent block needs as its input — while ``repr``/``str``/rich
rendering and :meth:`Outputs.to_json` (by default) show :data:`MASK` for the sensitive ones, so an
``Outputs`` that ends up in a log line, an exception message or ``print`` never leaks a secret.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

MASK = "(sensitive)"


class Outputs(Mapping[str, Any]):
    """Output values of one deployment and which of them are sensitive.

    ``outputs["name"]`` gives the real value (also of a sensitive output: it is needed to wire a
    dependent's input). Everything meant for people — :meth:`masked`, ``repr``, ``str``, the
    rich table — hides sensitive values.
    """

    __slots__ = ("_values", "_sensitive", "_types")

    def __init__(self, values: Mapping[str, Any] | None = None,
                 sensitive: frozenset[str] | set[str] | tuple[str, ...] = frozenset(),
                 types: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})
        unknown = set(sensitive) - set(self._values)
        if unknown:
            raise ValueError(f"sensitive names without a value: {sorted(unknown)}")
        self._sensitive = frozenset(sensitive)
        self._types: dict[str, Any] = dict(types or {})

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_terraform(cls, outputs: Mapping[str, Mapping[str, Any]] | None) -> Outputs:
        """From the ``outputs`` object of a state file or of ``terraform output -json``.

        Both have the shape ``{"name": {"value": …, "type": …, "sensitive": true?}}``.
        """
        values: dict[str, Any] = {}
        sensitive: set[str] = set()
        types: dict[str, Any] = {}
        for name, entry in (outputs or {}).items():
            values[name] = entry.get("value")
            if entry.get("sensitive"):
                sensitive.add(name)
            if "type" in entry:
                types[name] = entry["type"]
        return cls(values, frozenset(sensitive), types)

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> Outputs:
        """From a whole Terraform state document (``None``: no state yet → no outputs)."""
        return cls.from_terraform((state or {}).get("outputs"))

    # -- mapping of the real values -------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Outputs):
            return self._values == other._values and self._sensitive == other._sensitive
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-content mapping, like dict

    @property
    def sensitive(self) -> frozenset[str]:
        """Names of the sensitive outputs."""
        return self._sensitive

    def is_sensitive(self, name: str) -> bool:
        return name in self._sensitive

    def type_of(self, name: str) -> Any:
        """Terraform's type of an output as recorded in state (e.g. ``"string"``), or None."""
        return self._types.get(name)

    def unmasked(self) -> dict[str, Any]:
        """All values, sensitive ones included — only for wiring inputs or the block tests."""
        return dict(self._values)

    def subset(self, names: list[str] | tuple[str, ...] | set[str]) -> Outputs:
        """Only the named outputs (those that exist), keeping their sensitivity."""
        keep = [n for n in self._values if n in set(names)]
        return Outputs({n: self._values[n] for n in keep},
                       frozenset(n for n in keep if n in self._sensitive),
                       {n: self._types[n] for n in keep if n in self._types})

    # -- for people and for JSON ----------------------------------------------------------------

    def masked(self) -> dict[str, Any]:
        """Values with every sensitive one replaced by :data:`MASK`."""
        return {n: (MASK if n in self._sensitive else v) for n, v in self._values.items()}

    def to_json(self, *, reveal: bool = False) -> dict[str, dict[str, Any]]:
        """``{"name": {"value": …, "sensitive": bool}}`` — masked unless ``reveal``."""
        return {
            n: {"value": (v if reveal or n not in self._sensitive else MASK),
                "sensitive": n in self._sensitive}
            for n, v in self._values.items()
        }

    def digest(self) -> str:
        """sha256 (hex) of the canonical JSON of names, values and sensitivity.

        Canonical: keys sorted, no insignificant whitespace, UTF-8. Two deployments with the same
        outputs have the same digest whatever the order Terraform wrote them in; a dependent can
        compare it with the digest it was created against to see its inputs moved.
        """
        canonical = json.dumps(self.to_json(reveal=True), sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Outputs({self.masked()!r})"

    def __str__(self) -> str:
        if not self._values:
            return "(no outputs)"
        return "\n".join(f"{n} = {_short_json(v)}" for n, v in self.masked().items())

    def __rich__(self) -> Any:
        return render_outputs_table(self)


def _short_json(value: Any) -> str:
    if value == MASK:
        return MASK
    return json.dumps(value, ensure_ascii=False, default=str)


def render_outputs_table(outputs: Outputs, *, title: str | None = None) -> Any:
    """A rich ``Table`` of the outputs (name, value as JSON, sensitive values masked)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for name, value in outputs.masked().items():
        shown = Text(MASK, style="dim italic") if outputs.is_sensitive(name) \
            else Text(_short_json(value))
        table.add_row(name, shown)
    return table


def outputs_to_json(outputs: Outputs, *, reveal: bool = False) -> dict[str, dict[str, Any]]:
    """JSON-ready form for ``--json`` output: masked unless ``reveal`` (an explicit user choice)."""
    return outputs.to_json(reveal=reveal)

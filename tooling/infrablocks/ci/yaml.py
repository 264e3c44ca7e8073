"""A small YAML writer for GitHub Actions workflows (dicts, lists, strings, numbers, booleans).

Kept here so the generated file reads like a hand-written workflow (block style, multi-line
``run:`` scripts as literal blocks) without a YAML library among the dependencies. Strings that
YAML could read as something else are written as JSON strings, which YAML reads back verbatim.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_./][A-Za-z0-9_ ./@=,()+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def dump(document: dict[str, Any]) -> str:
    lines: list[str] = []
    _mapping(document, 0, lines)
    return "\n".join(lines) + "\n"


def scalar(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not text.endswith(" ") \
            and ": " not in text and " #" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _key(key: str) -> str:
    return key if _PLAIN.match(key) and " " not in key else json.dumps(key)


def _mapping(mapping: dict[str, Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if not mapping:
        lines[-1] += " {}"
        return
    for key, value in mapping.items():
        _entry(f"{pad}{_key(key)}:", value, indent, lines)


def _entry(prefix: str, value: Any, indent: int, lines: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            lines.append(f"{prefix} {{}}")
            return
        lines.append(prefix)
        _mapping(value, indent + 2, lines)
    elif isinstance(value, list):
        if not value:
            lines.append(f"{prefix} []")
            return
        lines.append(prefix)
        _sequence(value, indent + 2, lines)
    elif isinstance(value, str) and "\n" in value:
        lines.append(f"{prefix} |")
        for line in value.rstrip("\n").split("\n"):
            lines.append(f"{' ' * (indent + 2)}{line}" if line else "")
    else:
        lines.append(f"{prefix} {scalar(value)}")


def _sequence(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            first = True
            for key, value in item.items():
                lead = f"{pad}- " if first else f"{pad}  "
                _entry(f"{lead}{_key(key)}:", value, indent + 2, lines)
                first = False
        else:
            _entry(f"{pad}-", item, indent, lines) if not isinstance(item, dict) else \
                lines.append(f"{pad}- {{}}")

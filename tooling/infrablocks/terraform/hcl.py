"""Rendering Python values as HCL literals for the small files the tool generates.

Only what the generated files need: strings, numbers, booleans, lists and maps. Strings are
escaped so that a path or a value can never open an interpolation (``${`` / ``%{``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_KEYWORDS = {"true", "false", "null"}


def hcl_string(text: str) -> str:
    """A quoted HCL string literal holding exactly ``text``.

    HCL knows the escapes ``\\n \\r \\t \\" \\\\ \\uNNNN`` (not JSON's ``\\b``/``\\f``): other
    control characters are written as ``\\uNNNN``; ``${`` and ``%{`` are doubled so that the
    text never opens an interpolation or a directive.
    """
    body = "".join(_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ch == "\x7f"
                                        else ch) for ch in text)
    return '"' + body.replace("${", "$${").replace("%{", "%%{") + '"'


def hcl_key(key: str) -> str:
    """An object key: bare when it is an identifier (not true/false/null), quoted otherwise."""
    return key if _IDENTIFIER.match(key) and key not in _KEYWORDS else hcl_string(key)


def hcl_value(value: object, indent: int = 0) -> str:
    """An HCL literal for a JSON-like Python value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return hcl_string(value)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        pad = "  " * (indent + 1)
        lines = [f"{pad}{hcl_key(str(k))} = {hcl_value(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + "\n".join(lines) + "\n" + "  " * indent + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(hcl_value(v, indent) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as an HCL value")


def hcl_attributes(values: Mapping[str, object], indent: int = 0) -> str:
    """``key = value`` lines, one per entry (the body of a block or a .tfbackend file)."""
    pad = "  " * indent
    return "".join(f"{pad}{hcl_key(k)} = {hcl_value(v, indent)}\n" for k, v in values.items())

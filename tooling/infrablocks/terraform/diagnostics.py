"""Terraform's own error messages, cut out of its output for infrablocks' error messages.

With ``-no-color`` Terraform prints each diagnostic as a paragraph starting ``Error: summary``
(or ``Warning: …``), followed by the location, a source excerpt and the detail. Diagnostics about
the CLI configuration keep their box drawing (``│ Error: …``) even then; both forms are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOX = re.compile(r"^[╷│╵]\s?")
_START = re.compile(r"^(Error|Warning): ")
# Lines that end a diagnostic even without a following Error:/Warning: heading.
_PROGRESS = re.compile(r"^\S.*: (Creating|Destroying|Modifying|Reading|Refreshing|Still)")


def extract_diagnostics(lines: Iterable[str], severity: str = "Error") -> list[str]:
    """Each ``severity`` diagnostic (``"Error"`` or ``"Warning"``) as one trimmed text block."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in lines:
        raw = _ANSI.sub("", raw)
        line = _BOX.sub("", raw.rstrip("\n").rstrip())
        if raw.startswith("╵"):  # the end of a boxed diagnostic
            current = None
            continue
        if raw.startswith("╷"):
            continue
        heading = _START.match(line)
        if heading:
            current = [line] if heading.group(1) == severity else None
            if current is not None:
                blocks.append(current)
        elif current is not None:
            if _PROGRESS.match(line):
                current = None
            else:
                current.append(line)
    texts = []
    for block in blocks:
        while block and not block[-1].strip():
            block.pop()
        text = "\n".join(block)
        if text not in texts:  # Terraform repeats e.g. "execution halted" once per resource
            texts.append(text)
    return texts


def summarize_errors(lines: list[str], fallback_tail: int = 15) -> str:
    """Terraform's error blocks, or the last lines of its output when there are none."""
    errors = extract_diagnostics(lines)
    if errors:
        return "\n\n".join(errors)
    tail = [_ANSI.sub("", line).rstrip() for line in lines if line.strip()][-fallback_tail:]
    return "\n".join(tail)

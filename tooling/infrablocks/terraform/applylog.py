"""What an apply changed, read from its log (the driver keeps one log file per command)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["applied_changes"]

_APPLY_SUMMARY = re.compile(r"(\d+) added, (\d+) changed, (\d+) destroyed")


def applied_changes(log_path: Path) -> dict[str, int]:
    """Resources created / updated / deleted, from the apply's closing line in its log
    (``Apply complete! Resources: 9 added, 0 changed, 0 destroyed.``); only non-zero counts,
    keyed ``create`` / ``update`` / ``delete``; ``{}`` when the log is unreadable or has none."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    found = _APPLY_SUMMARY.findall(text)
    if not found:
        return {}
    counts = dict(zip(("create", "update", "delete"), map(int, found[-1]), strict=True))
    return {action: n for action, n in counts.items() if n}

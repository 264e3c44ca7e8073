"""Edits of blocks.toml that keep its layout and comments (tomlkit), e.g. moving a pin."""

from __future__ import annotations

from pathlib import Path

from infrablocks.errors import ConfigError
from infrablocks.private_files import write_atomic


def set_pin(registry_file: Path, environment: str, block: str, version: str) -> str | None:
    """Pin ``block`` to ``version`` in ``[environments.ENV] pins``; returns the old pin.

    Only that one value changes: comments, order and formatting of the file stay as they were.
    The file is replaced atomically, so a crash never leaves half a registry.
    """
    import tomlkit

    text = registry_file.read_text(encoding="utf-8")
    document = tomlkit.parse(text)
    environments = document.get("environments")
    if environments is None or environment not in environments:
        raise ConfigError(f"{registry_file.name}: no [environments.{environment}] to pin "
                          f"{block} in")
    table = environments[environment]
    pins = table.get("pins")
    if pins is None:
        pins = tomlkit.inline_table()
        table["pins"] = pins
    old = pins.get(block)
    pins[block] = version
    write_atomic(registry_file, tomlkit.dumps(document), mode=None)   # the user's file
    return None if old is None else str(old)

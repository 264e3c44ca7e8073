"""blocks.toml: the block registry, loaded and validated into a typed ``Registry``.

One module per concern; import from here, the public names stay here:

- ``model``: ``Registry``, ``Block``, ``BlockVersion``, ``Environment``, ``suggest``,
  ``format_key_path`` (no file access);
- ``loader``: ``load_registry`` (reading, parsing, caches), ``parse_toml``, ``gc_paused``;
- ``validate``: the document → ``Registry`` with every problem at once (``ConfigError``, exit 2);
  ``ALLOWED_KEYS``, the extension point for keys other parts read from the ``extra`` dicts;
- ``locate``: file and line of a key path, for the problems;
- ``cycles``: dependency cycles between blocks, found and described.
"""

from infrablocks.registry.cycles import describe_cycle, find_block_cycles
from infrablocks.registry.loader import gc_paused, load_registry, parse_toml
from infrablocks.registry.locate import locate_key
from infrablocks.registry.model import (
    BLOCK_NAME,
    BLOCK_NAME_HELP,
    ENV_NAME,
    ENV_NAME_HELP,
    IMAGE_REF,
    Block,
    BlockVersion,
    Environment,
    Registry,
    format_key_path,
    suggest,
)
from infrablocks.registry.validate import ALLOWED_KEYS, SETTINGS_TABLES, TABLE_VALUED_KEYS

__all__ = [
    "ALLOWED_KEYS",
    "BLOCK_NAME",
    "BLOCK_NAME_HELP",
    "ENV_NAME",
    "ENV_NAME_HELP",
    "IMAGE_REF",
    "SETTINGS_TABLES",
    "TABLE_VALUED_KEYS",
    "Block",
    "BlockVersion",
    "Environment",
    "Registry",
    "describe_cycle",
    "find_block_cycles",
    "format_key_path",
    "gc_paused",
    "load_registry",
    "locate_key",
    "parse_toml",
    "suggest",
]

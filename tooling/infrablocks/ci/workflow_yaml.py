"""Writing GitHub Actions workflows with PyYAML, in the style people write them by hand.

``yaml.safe_dump``'s representers with three changes of style, none of meaning: keys keep their
order, sequences are indented under their key (``steps:`` / ``  - run: …``), and a multi-line
string (a ``run:`` script) is a literal block (``|``). A string that a YAML reader would take
for something else is quoted: PyYAML's resolver knows YAML 1.1's forms (``on``, ``yes``,
``null``, ``~``, ``.5``, ``.inf``, ``0x10``, ``01``, ``2026-11-30`` …); the YAML 1.2 core
schema's (what GitHub's and actionlint's parsers follow: ``1e3``, ``0o17``, ``+1`` …) are added
here, so the file reads back the same under either.
"""

from __future__ import annotations

import re
from typing import Any

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution): null, bool, int, float
_CORE_SCHEMA = re.compile(
    r"null|Null|NULL|~|true|True|TRUE|false|False|FALSE"
    r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN")


def dump(document: dict[str, Any]) -> str:
    """The workflow ``document`` as YAML text (block style, no line folding)."""
    import yaml

    class WorkflowDumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)   # "- " indented under its key

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        if "\n" in value:
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        if _CORE_SCHEMA.fullmatch(value):
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
        return dumper.represent_str(value)

    WorkflowDumper.add_representer(str, represent_str)
    return yaml.dump(document, Dumper=WorkflowDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1 << 16)

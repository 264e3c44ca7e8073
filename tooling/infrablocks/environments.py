"""Environments: names, ephemeral ids and the subnet each environment's instances live in.

Every environment gets its own /24 inside 127.42.0.0/16 on the local cloud, so the instances of
two environments never share an address (each etcd member binds 2379 on its own IP). Persistent
environments may pin theirs in blocks.toml (`subnet = "127.42.5.0/24"`); otherwise one is
allocated and remembered in ``.infrablocks/subnets.json`` so it stays stable across runs.
Ephemeral environments (``t-<id>``) take one from a separate range and give it back when they are
destroyed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infrablocks.errors import ConfigError, UsageError

EPHEMERAL_PREFIX = "t-"
SUPERNET = ipaddress.ip_network("127.42.0.0/16")
PERSISTENT_RANGE = range(1, 100)      # 127.42.1.0/24 … 127.42.99.0/24
EPHEMERAL_RANGE = range(100, 200)     # 127.42.100.0/24 … 127.42.199.0/24 (200+ is for tests)
# Narrows the ephemeral range, e.g. "180-199" (third octets, inclusive): lets a test suite keep
# its throwaway environments inside the addresses it owns.
EPHEMERAL_RANGE_ENV = "INFRABLOCKS_EPHEMERAL_SUBNETS"


def new_ephemeral_name() -> str:
    """A fresh throwaway environment name, e.g. ``t-3fa9c2``."""
    return f"{EPHEMERAL_PREFIX}{secrets.token_hex(3)}"


def is_ephemeral(name: str) -> bool:
    return name.startswith(EPHEMERAL_PREFIX)


def parse_subnet(value: str, *, where: str) -> str:
    """Check a configured subnet: a /24 inside 127.42.0.0/16."""
    try:
        net = ipaddress.ip_network(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {value!r} is not a network ({exc})",
                          hint='write it like "127.42.5.0/24"') from None
    if net.prefixlen != 24 or not net.subnet_of(SUPERNET):
        raise ConfigError(f"{where}: {value!r} must be a /24 inside {SUPERNET}",
                          hint='for example "127.42.5.0/24"')
    return str(net)


def ephemeral_range() -> range:
    """Third octets of ephemeral subnets: ``$INFRABLOCKS_EPHEMERAL_SUBNETS``, else the default."""
    text = os.environ.get(EPHEMERAL_RANGE_ENV, "").strip()
    if not text:
        return EPHEMERAL_RANGE
    low, _, high = text.partition("-")
    try:
        chosen = range(int(low), int(high or low) + 1)
    except ValueError:
        chosen = range(0)
    if not chosen or chosen.start < EPHEMERAL_RANGE.start or chosen.stop > EPHEMERAL_RANGE.stop:
        raise UsageError(f"{EPHEMERAL_RANGE_ENV}={text!r} is not a range inside "
                         f"{EPHEMERAL_RANGE.start}-{EPHEMERAL_RANGE.stop - 1}",
                         hint=f'e.g. {EPHEMERAL_RANGE_ENV}="180-199"')
    return chosen


class SubnetAllocator:
    """Hands out one /24 per environment; the allocation table lives in a locked JSON file."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / "subnets.json"

    @contextmanager
    def _locked_table(self) -> Iterator[dict[str, str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table: dict[str, str] = {}
            if self.path.exists():
                table = json.loads(self.path.read_text() or "{}")
            before = dict(table)
            yield table
            if table != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(table, indent=2, sort_keys=True))
                os.replace(tmp, self.path)

    def subnet_for(self, environment: str, configured: str | None = None) -> str:
        """The environment's subnet: the configured one, else its allocation (made if new)."""
        with self._locked_table() as table:
            if configured:
                owner = next((env for env, net in table.items()
                              if net == configured and env != environment), None)
                if owner:
                    raise ConfigError(
                        f"environment {environment!r}: subnet {configured} is already used by "
                        f"environment {owner!r}",
                        hint="give each environment its own /24 in blocks.toml",
                    )
                table[environment] = configured
                return configured
            if environment in table:
                return table[environment]
            taken = set(table.values())
            pool = ephemeral_range() if is_ephemeral(environment) else PERSISTENT_RANGE
            for third in pool:
                candidate = f"127.42.{third}.0/24"
                if candidate not in taken:
                    table[environment] = candidate
                    return candidate
        raise UsageError(
            f"no free subnet left for environment {environment!r}",
            hint=f"destroy unused environments (see {self.path})",
        )

    def release(self, environment: str) -> None:
        with self._locked_table() as table:
            table.pop(environment, None)

    def allocations(self) -> dict[str, str]:
        with self._locked_table() as table:
            return dict(table)

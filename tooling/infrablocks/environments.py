"""Environments: names, ephemeral ids and the subnet each environment's instances live in.

Every environment gets its own /24 inside 127.42.0.0/16 on the local cloud, so the instances of
two environments never share an address (each etcd member binds 2379 on its own IP) — also
across checkouts: subnets are allocated from one machine-wide table
(:mod:`infrablocks.subnets`), and a subnet with a bound address is never handed out.

- Persistent environments take one from 127.42.1-99 and keep it; blocks.toml may pin one
  (``subnet = "127.42.5.0/24"``). A pin is a claim like any other: while another checkout's
  environment holds that subnet (its state exists, or its command runs, or its addresses are
  bound), this checkout is refused with who holds it. Two checkouts that share the state (the
  same S3 bucket and prefix) are the same environment and share its subnet.
- Ephemeral environments (``t-<id>``) take one from 127.42.100-199 and give it back when they
  are destroyed.
- 127.42.200-254 are not allocated to environments: the tool's own test suite and image
  verification use them (tests claim theirs with :meth:`SubnetAllocator.subnet_for` too).

The checkout remembers what it was given in ``.infrablocks/subnets.json`` (``{env: subnet}``,
the per-checkout table of earlier versions, migrated into the machine-wide table on first use):
an environment whose entry was lost (a moved checkout, a deleted state directory) gets its
subnet back when that is still free.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from infrablocks.errors import ConfigError, UsageError
from infrablocks.registry.validate import SUBNET_SUPERNET
from infrablocks.subnets import Entry, Holder, SubnetTable, Table, bound_in, now

EPHEMERAL_PREFIX = "t-"
SUPERNET = SUBNET_SUPERNET   # one definition: the registry validates pins against it
PERSISTENT_RANGE = range(1, 100)      # 127.42.1.0/24 … 127.42.99.0/24
EPHEMERAL_RANGE = range(100, 200)     # 127.42.100.0/24 … 127.42.199.0/24
SCRATCH_RANGE = range(200, 255)       # 127.42.200.0/24 … 127.42.254.0/24: tests, verification
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
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen != 24 \
            or not net.subnet_of(SUPERNET):   # an IPv6 network is refused, not a TypeError
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



def pool_for(environment: str) -> range:
    """Third octets an environment's subnet is allocated from."""
    return ephemeral_range() if is_ephemeral(environment) else PERSISTENT_RANGE


def pinned_subnets(registry: Any) -> dict[str, str]:
    """Subnets blocks.toml pins, by environment (unparsable pins are left to the environment's
    own command, which reports them)."""
    pinned = {}
    for name, declared in registry.environments.items():
        value = declared.extra.get("subnet")
        if value is None:
            continue
        try:
            pinned[name] = parse_subnet(str(value), where=f"environments.{name}.subnet")
        except ConfigError:
            continue
    return pinned


# -- where an environment's state lives (its key in the machine-wide table) ------------------

Locator = Callable[[str], tuple[str, str | None]]


def checkout_locator(checkout: Path, state_root: Path | None = None) -> Locator:
    """Environments whose state is in a local directory (default ``<checkout>/.infrablocks/
    state``): key and state directory are ``<state root>/<env>``."""
    root = (state_root or checkout / ".infrablocks" / "state").resolve()

    def locate(environment: str) -> tuple[str, str | None]:
        where = str(root / environment)
        return where, where

    return locate


def backend_locator(backend: Any, checkout: Path) -> Locator:
    """The key of an environment of ``backend``: its local state directory, or for S3
    ``s3://BUCKET/PREFIX/ENV`` (no local directory: its state cannot be looked at cheaply, so
    such an entry is only reclaimed when its checkout is gone)."""
    if getattr(backend, "kind", None) == "local":
        return checkout_locator(checkout, Path(backend.root))
    settings = getattr(backend, "settings", None)
    bucket, prefix = getattr(settings, "bucket", "?"), getattr(settings, "prefix", "")

    def locate(environment: str) -> tuple[str, str | None]:
        return "s3://" + "/".join(p for p in (bucket, prefix, environment) if p), None

    return locate


class SubnetAllocator:
    """One checkout's view of the machine-wide subnet table (see the module docstring).

    ``checkout``: the repository root. ``table``: the machine-wide table (default: the user's
    state directory). ``locate(env) -> (key, local state dir or None)``: where an environment's
    state lives (default: ``<checkout>/.infrablocks/state/<env>``). ``has_state(env)``: whether
    the environment has any state (default: looks in the local state directory). ``reserved``:
    subnets pinned in blocks.toml, by environment (never allocated to another environment).
    ``deployed_subnets(env)``: the /24s the environment's state shows its instances on
    (default: :func:`subnets_in_state` over the local state directory's ``*/terraform.tfstate``).

    Errors: ``ConfigError`` (exit 2) for a pin another checkout's live environment holds, a
    pin whose addresses are bound, a pin that would move an environment with state, an
    environment with state whose subnet cannot be known, or one whose subnet was taken while it
    has state; ``UsageError`` when the pool is exhausted.
    """

    def __init__(self, checkout: Path, *, table: SubnetTable | None = None,
                 locate: Locator | None = None,
                 has_state: Callable[[str], bool] | None = None,
                 reserved: Mapping[str, str] | None = None,
                 deployed_subnets: Callable[[str], set[str]] | None = None) -> None:
        self.checkout = Path(checkout).resolve()
        self._deployed_subnets = deployed_subnets
        self.table = table or SubnetTable()
        self.locate = locate or checkout_locator(self.checkout)
        self._has_state = has_state
        self.reserved = dict(reserved or {})
        self.memory_path = self.checkout / ".infrablocks" / "subnets.json"
        self.notes: list[str] = []     # what the last calls reclaimed (for people)

    # -- public ---------------------------------------------------------------------------

    def subnet_for(self, environment: str, configured: str | None = None, *,
                   claim: bool = True, destroying: bool = False,
                   saved_plan: Path | None = None) -> str:
        """The environment's subnet, and (``claim=True``) claimed for it in the machine-wide
        table and remembered in the checkout's memory.

        - An environment with state keeps the subnet it was created on: the one its state's
          instances are on (:func:`subnets_in_state`), else its table entry, else the checkout's
          memory. A pin (``configured``) that differs is refused, and so is an environment with
          state whose subnet cannot be known (no subnet in its state, no entry, no usable
          memory) unless blocks.toml pins it (``ConfigError``; nothing is written).
        - Otherwise: its entry, else the pin, else a free one.

        ``claim=False`` is for read-only commands (status, plan, outputs, graph …): the same
        answer and the same refusals, but the table and the memory are left as they are.
        ``destroying=True`` (destroy): a pin that differs is no error — the environment is
        destroyed where it is (the pin only stands in when its subnet cannot be known).
        ``saved_plan`` (with ``claim``): a saved plan is made on the subnet; the claim holds
        while that file exists, so that its `doit apply` finds the same subnet (a claim kept
        by an earlier saved plan is carried on while its file exists).
        """
        with self.table.locked(write=claim) as table:
            memory, damaged = self._read_memory_checked()
            self._migrate(table, memory)
            key, state_dir = self.locate(environment)
            mine = table.entries.get(key)
            bound = _Lazy(self.table.bound)
            if self.has_state(environment):
                chosen = self._keep_deployed(table, key, environment, configured, mine,
                                             memory, damaged, bound, destroying=destroying)
            elif configured:
                chosen = self._claim_pinned(table, key, state_dir, environment, configured,
                                            mine, bound)
            elif mine is not None:
                chosen = mine.subnet
            else:
                chosen = self._allocate(table, key, environment, memory.get(environment), bound)
            if not claim:
                return chosen
            same = mine is not None and mine.subnet == chosen
            kept_plan = mine.saved_plan if same and mine.waits_for_apply() else None  # type: ignore[union-attr]
            table.entries[key] = Entry(
                subnet=chosen, environment=environment, checkout=str(self.checkout),
                state=state_dir, pinned=configured == chosen,
                since=mine.since if same else now(),  # type: ignore[union-attr]
                holder=Holder.current(),
                saved_plan=str(Path(saved_plan).resolve()) if saved_plan is not None
                else kept_plan)
            if "*" in damaged:   # kept aside for a person to look at, then written afresh
                aside = self.memory_path.with_name(self.memory_path.name + ".unreadable")
                os.replace(self.memory_path, aside)
                self.notes.append(f"{self.memory_path} was unreadable ({damaged['*']}); "
                                  f"moved to {aside}")
            if memory.get(environment) != chosen or environment in damaged \
                    or "*" in damaged:
                memory[environment] = chosen
                self._write_memory(memory)
            return chosen

    def release(self, environment: str) -> None:
        """Give the environment's subnet back (after it was destroyed)."""
        with self.table.locked() as table:
            key, _ = self.locate(environment)
            entry = table.entries.get(key)
            if entry is not None and Path(entry.checkout) == self.checkout:
                del table.entries[key]
            memory = self._read_memory()
            if memory.pop(environment, None) is not None:
                self._write_memory(memory)

    def allocations(self) -> dict[str, str]:
        """This checkout's environments and their subnets (from the machine-wide table)."""
        with self.table.locked() as table:
            self._migrate(table, self._read_memory())
            return {e.environment: e.subnet for e in table.entries.values()
                    if Path(e.checkout) == self.checkout}

    # -- policy ---------------------------------------------------------------------------

    def has_state(self, environment: str) -> bool:
        if self._has_state is not None:
            return self._has_state(environment)
        from infrablocks.subnets import local_state_exists

        _, state_dir = self.locate(environment)
        return state_dir is not None and local_state_exists(Path(state_dir))

    def deployed_subnets(self, environment: str) -> set[str]:
        """The /24s the environment's state shows instances on (empty: nothing to tell)."""
        if self._deployed_subnets is not None:
            return self._deployed_subnets(environment)
        _, state_dir = self.locate(environment)
        if state_dir is None or not Path(state_dir).is_dir():
            return set()
        found: set[str] = set()
        for state_file in sorted(Path(state_dir).glob("*/terraform.tfstate")):
            try:
                found |= subnets_in_state(json.loads(state_file.read_text() or "{}"))
            except (OSError, ValueError):
                continue
        return found

    def _keep_deployed(self, table: Table, key: str, environment: str, configured: str | None,
                       mine: Entry | None, memory: dict[str, str], damaged: dict[str, str],
                       bound: _Lazy, *, destroying: bool = False) -> str:
        """The subnet of an environment that has state: the one it is on (see subnet_for)."""
        where = f"blocks.toml [environments.{environment}] subnet"
        in_state = self.deployed_subnets(environment)
        if len(in_state) == 1:
            current: str | None = next(iter(in_state))
            source = "its Terraform state"
            if mine is not None and mine.subnet != current:
                self.notes.append(f"environment {environment!r}: the table said {mine.subnet}, "
                                  f"its state's instances are on {current}")
        elif mine is not None:
            current, source = mine.subnet, f"the machine-wide table {self.table.path}"
        elif memory.get(environment):
            current, source = memory[environment], str(self.memory_path)
        else:
            current, source = None, ""
        if current is None:
            if configured:
                return self._claim_pinned(table, key, None, environment, configured, mine, bound)
            found = (f" (it holds {damaged[environment]} for it, not a subnet)"
                     if environment in damaged else f" ({damaged['*']})" if "*" in damaged
                     else " (no entry for it)")
            raise ConfigError(
                f"environment {environment!r} has state, but which subnet its instances are on "
                f"is not known: the machine-wide table {self.table.path} has no entry for it, "
                f"its state names none, and the checkout's memory {self.memory_path} cannot "
                f"tell{found}",
                hint=f'put its subnet back into {self.memory_path} ({{"{environment}": '
                     f'"127.42.N.0/24"}}) or pin it in {where} = "127.42.N.0/24"; or destroy '
                     f"the environment first (doit destroy … --env {environment})")
        if configured and configured != current and not destroying:
            raise ConfigError(
                f"environment {environment!r} is deployed on {current} (from {source}); "
                f"{where} = {configured!r} would move it, and its instances cannot move",
                hint=f'put the pin back ({where} = "{current}") or remove it; to move the '
                     f"environment, destroy it first (doit destroy … --env {environment}), "
                     "then create it again")
        owner = table.owner_of(current)
        if owner is not None and owner[0] != key:
            reason = owner[1].stale_reason(bound())
            if reason is None:
                raise ConfigError(
                    f"environment {environment!r} of this checkout was created on {current} "
                    f"(from {source}), which {owner[1].describe()} uses now",
                    hint="its instances cannot move; destroy one of the two environments, "
                         "then run the command again")
            self._reclaim(table, owner[0], owner[1], reason)
        return current

    def _claim_pinned(self, table: Table, key: str, state_dir: str | None, environment: str,
                      subnet: str, mine: Entry | None, bound: _Lazy) -> str:
        where = f"blocks.toml environments.{environment}.subnet"
        if mine is not None and mine.subnet == subnet:
            return subnet
        for other_env, pinned in self.reserved.items():
            if pinned == subnet and other_env != environment:
                raise ConfigError(f"environment {environment!r}: subnet {subnet} is also "
                                  f"pinned for environment {other_env!r}",
                                  hint="give each environment its own /24 in blocks.toml")
        owner = table.owner_of(subnet)
        if owner is not None and owner[0] != key:
            other_key, other = owner
            reason = other.stale_reason(bound())
            if reason is None:
                same_checkout = Path(other.checkout) == self.checkout
                raise ConfigError(
                    f"environment {environment!r}: subnet {subnet} ({where}) is in use by "
                    + (f"environment {other.environment!r}" if same_checkout
                       else f"{other.describe()}") + f" since {other.since}",
                    hint="give each environment its own /24 in blocks.toml" if same_checkout
                    else "two local clouds on the same addresses collide: destroy that "
                         "environment there first, or pin another /24 here (or none: one is "
                         "allocated)")
            self._reclaim(table, other_key, other, reason)
        if not self.has_state(environment):
            used = bound_in(subnet, bound())
            if used:
                raise ConfigError(
                    f"environment {environment!r}: subnet {subnet} ({where}) has addresses "
                    f"in use on this machine: {', '.join(used[:5])}"
                    + (" …" if len(used) > 5 else ""),
                    hint="something else listens there (another checkout's local cloud?); "
                         "pin another /24 or none")
        return subnet

    def _allocate(self, table: Table, key: str, environment: str, remembered: str | None,
                  bound: _Lazy) -> str:
        pinned_elsewhere = set(self.reserved.values())
        if remembered is not None:
            owner = table.owner_of(remembered)
            if owner is not None and owner[0] != key:
                reason = owner[1].stale_reason(bound())
                if reason is None:
                    if self.has_state(environment):
                        raise ConfigError(
                            f"environment {environment!r} of this checkout was created on "
                            f"{remembered} (remembered in {self.memory_path}), which "
                            f"{owner[1].describe()} uses now",
                            hint="its instances cannot move; destroy one of the two "
                                 "environments, then run the command again")
                    remembered = None
                else:
                    self._reclaim(table, owner[0], owner[1], reason)
            if remembered is not None and remembered not in pinned_elsewhere and (
                    self.has_state(environment) or not bound_in(remembered, bound())):
                return remembered
        for third in pool_for(environment):
            candidate = f"127.42.{third}.0/24"
            if candidate in pinned_elsewhere:
                continue
            owner = table.owner_of(candidate)
            if owner is not None:
                reason = owner[1].stale_reason(bound())
                if reason is None:
                    continue
                if bound_in(candidate, bound()):
                    continue
                self._reclaim(table, owner[0], owner[1], reason)
                return candidate
            if not bound_in(candidate, bound()):
                return candidate
        raise UsageError(
            f"no free subnet left for environment {environment!r}",
            hint=f"destroy unused environments (the machine-wide table is {self.table.path})")

    def _reclaim(self, table: Table, key: str, entry: Entry, reason: str) -> None:
        del table.entries[key]
        self.notes.append(f"reclaimed {entry.subnet} from {entry.describe()}: {reason}")

    # -- the checkout's own memory (and the migration of the old per-checkout table) -------

    def _read_memory(self) -> dict[str, str]:
        return self._read_memory_checked()[0]

    def _read_memory_checked(self) -> tuple[dict[str, str], dict[str, str]]:
        """The memory's usable entries ``{env: subnet}``, and what it holds for environments it
        cannot tell about (``{env: raw text}``; ``{"*": …}`` when the whole file is unusable)."""
        try:
            data = json.loads(self.memory_path.read_text() or "{}")
        except FileNotFoundError:
            return {}, {}
        except (OSError, ValueError) as exc:
            return {}, {"*": f"not JSON: {exc}"}
        if not isinstance(data, dict):
            return {}, {"*": f"not an object: {data!r}"[:80]}
        memory: dict[str, str] = {}
        damaged: dict[str, str] = {}
        for name, value in data.items():
            try:
                memory[str(name)] = parse_subnet(str(value), where=str(self.memory_path)) \
                    if isinstance(value, str) else ""
            except ConfigError:
                memory[str(name)] = ""
            if not memory[str(name)]:
                del memory[str(name)]
                damaged[str(name)] = repr(value)[:80]
        return memory, damaged

    def _write_memory(self, memory: dict[str, str]) -> None:
        from infrablocks.private_files import write_private_text

        self.memory_path.parent.mkdir(parents=True, exist_ok=True)
        write_private_text(self.memory_path, json.dumps(memory, indent=2, sort_keys=True) + "\n")

    def _migrate(self, table: Table, memory: dict[str, str]) -> None:
        """Claim what this checkout remembers but the machine-wide table lacks (the table of
        earlier versions, or an entry lost): only subnets nobody else holds; no holder, so an
        environment without state and addresses is reclaimable at once."""
        for environment, subnet in sorted(memory.items()):
            key, state_dir = self.locate(environment)
            if key in table.entries or table.owner_of(subnet) is not None:
                continue
            table.entries[key] = Entry(
                subnet=subnet, environment=environment, checkout=str(self.checkout),
                state=state_dir, pinned=self.reserved.get(environment) == subnet, since=now())


def subnets_in_state(state: Mapping[str, Any] | None) -> set[str]:
    """The /24s of 127.42.0.0/16 a Terraform state's resources have a ``private_ip`` in.

    Every block is given ``subnet_cidr`` and places its instances in it, so the instances'
    addresses in the state tell the subnet the block was applied with (a state without
    instances tells nothing: empty set). Shape: the tfstate JSON (``resources[].instances[].
    attributes``).
    """
    found: set[str] = set()
    if not isinstance(state, Mapping):
        return found
    for resource in state.get("resources") or []:
        for instance in (resource.get("instances") or []) if isinstance(resource, dict) else []:
            attributes = instance.get("attributes") if isinstance(instance, dict) else None
            value = attributes.get("private_ip") if isinstance(attributes, dict) else None
            try:
                address = ipaddress.ip_address(str(value))
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv4Address) and address in SUPERNET:
                found.add(str(ipaddress.ip_network(f"{address}/24", strict=False)))
    return found


class _Lazy:
    """Bound addresses, read at most once per table transaction."""

    def __init__(self, read: Callable[[], set[ipaddress.IPv4Address]]) -> None:
        self._read = read
        self._value: set[ipaddress.IPv4Address] | None = None

    def __call__(self) -> set[ipaddress.IPv4Address]:
        if self._value is None:
            self._value = self._read()
        return self._value

"""The provider's creates that no Terraform state has confirmed yet: what repairs a crash.

A create the provider carried out whose result never reached a Terraform state (the provider
process was killed mid-apply, or Terraform was before it saved its state) leaves an instance or
a volume that no state holds; an instance keeps its private IP, so the next apply's create of
the same instance would fail ("private IP … is already used"). So every create goes through a
journal entry, ``LOCALCLOUD_ROOT/.provider/creates/<token>.json``, written *before* the cloud
call and whose token is the call's ``client_token`` (EC2's ClientToken, recorded with the
instance or volume in the same locked step that makes it):

- the entry holds a digest of what was asked (the resource kind and every argument) and, while
  the create is in progress, the provider process making it (pid and start time);
- when the create has returned its result (:meth:`CreateJournal.done`), the entry waits for
  Terraform to confirm it: the provider hands the resource over again, reading it (every
  plan's refresh does), updating, importing or deleting it, and the entry is removed then;
- a create with the same digest as an entry that is not in progress (its create returned, or
  its provider process is gone) is a retry of that create: Terraform plans to create only
  what its state lacks, so the earlier result never reached a state. The retry takes over the
  entry's token, and the cloud returns what was made then instead of making a second one (an
  instance whose process has died meanwhile is terminated and launched again).

An entry whose create is still in progress in a running provider process is never taken over
(two runs creating the same thing at once). A create with other arguments for an address an
orphan holds still fails on the address, with the cloud's error naming the instance: nothing
here terminates what it cannot prove is the same request.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.cloud.local import process
from infrablocks.cloud.local.records import read_json, write_json

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud

JOURNAL_DIR = Path(".provider") / "creates"


@dataclass(frozen=True)
class Claim:
    """A create's token; ``retry``: it is an earlier, unconfirmed create's token."""

    token: str
    retry: bool


class CreateJournal:
    """The journal of ``cloud`` (see the module docstring). Call :meth:`begin` while holding
    the cloud's lock, and make the cloud call in the same locked step."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.directory = cloud.root / JOURNAL_DIR
        self.me = _identity()

    def begin(self, kind: str, arguments: dict[str, Any]) -> Claim:
        """The token for creating a ``kind`` with ``arguments`` (an orphan's, if there is one)."""
        digest = hashlib.sha256(json.dumps([kind, arguments], sort_keys=True,
                                           default=str).encode()).hexdigest()
        self.directory.mkdir(parents=True, exist_ok=True)
        taken = None
        for path in sorted(self.directory.glob(f"{kind}-*.json")):
            entry = read_json(path)
            if entry is None or entry.get("digest") != digest:
                continue
            pid, start_time = entry.get("creator") or (None, None)
            if pid is None or not process.is_alive(pid, start_time):
                taken = path.stem
                break
        token = taken or f"{kind}-{secrets.token_hex(12)}"
        write_json(self.directory / f"{token}.json", {
            "kind": kind, "digest": digest, "creator": list(self.me),
            "since": datetime.now(UTC).isoformat(timespec="seconds")})
        return Claim(token, retry=taken is not None)

    def done(self, token: str) -> None:
        """The create made with ``token`` has returned: from now on only Terraform's
        confirmation is awaited (the entry is no longer a create in progress)."""
        path = self.directory / f"{token}.json"
        entry = read_json(path)
        if entry is not None:
            write_json(path, {**entry, "creator": None})

    def confirm(self, token: str | None) -> None:
        """Terraform holds the resource made with ``token``: forget the entry."""
        if token:
            (self.directory / f"{token}.json").unlink(missing_ok=True)


def _identity() -> tuple[int, int | None]:
    """This process as (pid, start time in clock ticks): a recycled pid is not taken for it."""
    pid = os.getpid()
    stat = process.read_stat(pid)
    return pid, stat[1] if stat is not None else None

"""The built-in ``http`` check: every member answers an HTTP health endpoint.

Options (``check_options``): ``port`` (80), ``path`` ("/health"), ``expect_status`` (200),
``scheme`` ("http"), ``request_timeout`` (2 s). There is no leader: units go in index order and
moving leadership does nothing.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from infrablocks.health.base import CheckContext, GateResult, Member


class HttpCheck:
    def __init__(self, context: CheckContext | None = None) -> None:
        options = context.options if context else {}
        self.port = int(options.get("port", 80))
        self.path = str(options.get("path", "/health"))
        self.expect = int(options.get("expect_status", 200))
        self.scheme = str(options.get("scheme", "http"))
        self.timeout = float(options.get("request_timeout", 2.0))

    def url(self, member: Member) -> str:
        return f"{self.scheme}://{member.private_ip}:{self.port}{self.path}"

    def probe(self, member: Member) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.url(member), timeout=self.timeout) as response:
                return {"url": self.url(member), "status": response.status}
        except urllib.error.HTTPError as exc:
            return {"url": self.url(member), "status": exc.code}
        except OSError as exc:
            return {"url": self.url(member), "error": str(exc)}

    def _ok(self, entry: dict[str, Any]) -> bool:
        return entry.get("status") == self.expect

    def cluster_health(self, members: list[Member]) -> GateResult:
        survey = {m.name: self.probe(m) for m in members}
        bad = [name for name, entry in survey.items() if not self._ok(entry)]
        if bad:
            return GateResult(False, f"not answering {self.expect}: {', '.join(bad)}",
                              {"members": survey})
        return GateResult(True, f"{len(members)} member"
                          f"{'' if len(members) == 1 else 's'} answer {self.expect}",
                          {"members": survey})

    def leader(self, members: list[Member]) -> Member | None:
        return None

    def member_healthy(self, member: Member, members: list[Member]) -> GateResult:
        entry = self.probe(member)
        answer = entry.get("status", entry.get("error"))
        return GateResult(self._ok(entry), f"{member.name}: {answer}", {"member": entry})

    def move_leader_off(self, member: Member, members: list[Member]) -> None:
        return None

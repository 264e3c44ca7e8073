"""A check a block provides as a command: ``check = { command = ["./health.sh"] }``.

The command (relative paths resolve against the block version's directory) is run as
``COMMAND <operation>`` with ``operation`` one of ``cluster-health``, ``leader``,
``member-healthy``, ``move-leader-off`` and the environment variables

- ``INFRABLOCKS_MEMBERS``: JSON list of the members (``Member.to_dict()``),
- ``INFRABLOCKS_MEMBER``: JSON of the member concerned (member-healthy, move-leader-off),
- ``INFRABLOCKS_CHECK_OPTIONS``: JSON of the declaration's ``check_options``.

Exit status 0 means healthy. The first stdout line is the summary; if stdout is a JSON object,
its ``summary`` and ``evidence`` keys are used. ``leader`` prints the leading member's name (or
nothing). Each run is bounded by ``check_options.command_timeout`` (default 30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from infrablocks.errors import ConfigError
from infrablocks.health.base import CheckContext, GateResult, Member


class CommandCheck:
    def __init__(self, command: list[str], context: CheckContext) -> None:
        self.context = context
        first = command[0]
        if context.block_dir and (first.startswith("./") or first.startswith("../")):
            first = str((Path(context.block_dir) / first).resolve())
        self.command = [first, *command[1:]]
        self.timeout = float(context.options.get("command_timeout", 30))

    def _run(self, operation: str, members: list[Member],
             member: Member | None = None) -> tuple[int, str, str]:
        env = dict(os.environ)
        env["INFRABLOCKS_MEMBERS"] = json.dumps([m.to_dict() for m in members])
        env["INFRABLOCKS_CHECK_OPTIONS"] = json.dumps(self.context.options)
        if member is not None:
            env["INFRABLOCKS_MEMBER"] = json.dumps(member.to_dict())
        try:
            done = subprocess.run([*self.command, operation], env=env, capture_output=True,
                                  text=True, timeout=self.timeout, check=False)
        except FileNotFoundError as exc:
            raise ConfigError(f"check command of block {self.context.block!r} not found: "
                              f"{self.command[0]}") from exc
        except subprocess.TimeoutExpired:
            return 124, "", f"timed out after {self.timeout:g}s"
        return done.returncode, done.stdout, done.stderr

    def _result(self, operation: str, code: int, out: str, err: str) -> GateResult:
        summary, evidence = "", {}
        try:
            parsed = json.loads(out)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            summary = str(parsed.get("summary", ""))
            evidence = dict(parsed.get("evidence") or {})
        else:
            summary = out.strip().splitlines()[0] if out.strip() else ""
        evidence.setdefault("command", [*self.command, operation])
        evidence.setdefault("exit_status", code)
        if err.strip():
            evidence.setdefault("stderr", err.strip()[-2000:])
        return GateResult(code == 0, summary or f"{operation}: exit {code}", evidence)

    def cluster_health(self, members: list[Member]) -> GateResult:
        return self._result("cluster-health", *self._run("cluster-health", members))

    def member_healthy(self, member: Member, members: list[Member]) -> GateResult:
        return self._result("member-healthy", *self._run("member-healthy", members, member))

    def leader(self, members: list[Member]) -> Member | None:
        code, out, _ = self._run("leader", members)
        name = out.strip()
        if code != 0 or not name:
            return None
        return next((m for m in members if m.name == name), None)

    def move_leader_off(self, member: Member, members: list[Member]) -> None:
        self._run("move-leader-off", members, member)

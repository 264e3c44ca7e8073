"""The built-in ``patroni`` check: PostgreSQL HA clusters managed by Patroni (the stolon block).

It reads Patroni's REST API on each member (``http://IP:8008``):

- ``GET /cluster`` — the DCS view shared by every member: names, roles (``leader`` /
  ``replica`` / ``sync_standby``), states, hosts, each replica's ``lag`` in bytes;
- ``GET /patroni`` — one member's own view (its state and role, and on the leader the
  ``replication`` rows of ``pg_stat_replication``: which replicas stream from it);
- ``POST /switchover`` ``{"leader": ..., "candidate": ...}`` — a planned leader change.

Gates:

- cluster healthy: every member answers ``/patroni``; ``/cluster`` lists exactly the group's
  members (matched by host) with one leader among them; every other member is ``running`` (or
  ``streaming``, Patroni ≥ 3.0.4), appears as ``streaming`` in the leader's replication rows,
  and lags ≤ ``max_lag_bytes`` — the leader's WAL location minus the replica's replayed
  location, both read from ``/patroni`` at the time of the check (``/cluster``'s own ``lag``
  is up to a Patroni loop stale: only a fallback);
- member healthy (rejoined): the member answers and is running, is in ``/cluster``, and is the
  leader or a replica that streams from the leader with lag under the bound;
- move leader off: when the member leads, ``POST /switchover`` to the healthy replica with the
  least lag, then wait (``switchover_timeout``) until the new leader runs as primary.

Options (``check_options``): ``api_port`` (8008), ``max_lag_bytes`` (1048576, Patroni's own
``maximum_lag_on_failover``), ``request_timeout`` (3 s), ``switchover_timeout`` (60 s),
``probe_timeout`` (180 s: how long the data probe retries while the cluster comes up).

A data probe for ``doit test-upgrade`` writes a row on the primary and reads it back from every
member with Debian's ``psql``, using the block's outputs ``superuser`` / ``superuser_password``
/ ``port``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from infrablocks.errors import InfrablocksError
from infrablocks.health.base import CheckContext, GateResult, Member
from infrablocks.waiting import poll, retry

__all__ = ["PatroniCheck", "PatroniError", "ClusterView"]

LEADER_ROLES = ("leader", "standby_leader")
HEALTHY_REPLICA_STATES = ("running", "streaming")   # "streaming" from Patroni 3.0.4 on
HEALTHY_STATES = HEALTHY_REPLICA_STATES               # a member's own /patroni state
PROBE_TABLE = "infrablocks_upgrade_probe"
PSQL_CANDIDATES = ("/usr/bin/psql", "/usr/lib/postgresql/15/bin/psql")


class PatroniError(InfrablocksError):
    """The Patroni API refused or failed an operation (switchover, probe)."""


@dataclass
class ClusterView:
    """What the members said at one moment: their own ``/patroni`` and the ``/cluster`` view."""

    own: dict[str, dict[str, Any]]                  # member name → /patroni (or {"error": ...})
    cluster: list[dict[str, Any]] | None            # /cluster members (None: nobody answered)
    cluster_from: str | None = None                 # which member answered /cluster
    problems: list[str] = field(default_factory=list)
    lags: dict[str, int | str] = field(default_factory=dict)   # replica → bytes (fresh)

    def entry_for(self, member: Member) -> dict[str, Any] | None:
        """``member``'s row of ``/cluster`` (matched by host, then by name)."""
        for row in self.cluster or []:
            if row.get("host") == member.private_ip:
                return row
        return next((row for row in self.cluster or [] if row.get("name") == member.name), None)

    def leader_row(self) -> dict[str, Any] | None:
        leaders = [row for row in self.cluster or [] if row.get("role") in LEADER_ROLES]
        return leaders[0] if len(leaders) == 1 else None

    def evidence(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "cluster_from": self.cluster_from,
                "members": self.own, "replica_lag_bytes": self.lags}


class PatroniCheck:
    """:class:`~infrablocks.health.base.ServiceCheck` for Patroni clusters."""

    def __init__(self, context: CheckContext | None = None) -> None:
        options = context.options if context else {}
        self.api_port = int(options.get("api_port", 8008))
        self.max_lag = int(options.get("max_lag_bytes", 1024 * 1024))
        self.timeout = float(options.get("request_timeout", 3.0))
        self.switchover_timeout = float(options.get("switchover_timeout", 60.0))
        self.probe_timeout = float(options.get("probe_timeout", 180.0))
        self.outputs = dict(context.outputs) if context else {}

    # -- the REST API ------------------------------------------------------------------------

    def api_url(self, member: Member) -> str:
        return f"http://{member.private_ip}:{self.api_port}"

    def _request(self, url: str, body: dict[str, Any] | None = None,
                 timeout: float | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or text); HTTP errors are answers, not exceptions."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.status, _parse(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _parse(error.read())

    def _get(self, member: Member, path: str) -> dict[str, Any]:
        """GET a JSON document; raises PatroniError naming the member when it cannot."""
        url = self.api_url(member) + path
        try:
            status, document = self._request(url)
        except (OSError, ValueError) as error:
            raise PatroniError(f"{member.name}: GET {url}: {_reason(error)}") from None
        if not isinstance(document, dict):
            raise PatroniError(f"{member.name}: GET {url}: HTTP {status} {document!r}"[:300])
        return document

    def view(self, members: list[Member]) -> ClusterView:
        """Ask every member for ``/patroni``, and the first that answers for ``/cluster``."""
        own: dict[str, dict[str, Any]] = {}
        for member in members:
            try:
                own[member.name] = _own_summary(self._get(member, "/patroni"))
            except PatroniError as error:
                own[member.name] = {"error": error.message}
        result = ClusterView(own=own, cluster=None)
        for member in sorted(members, key=lambda m: "error" in own[m.name]):
            try:
                result.cluster = [_row_summary(row) for row in
                                  self._get(member, "/cluster").get("members", [])]
                result.cluster_from = member.name
                break
            except PatroniError as error:
                result.problems.append(error.message)
        return result

    # -- ServiceCheck ------------------------------------------------------------------------

    def cluster_health(self, members: list[Member]) -> GateResult:
        view = self.view(members)
        problems = [entry["error"] for entry in view.own.values() if "error" in entry]
        problems += [f"{name}: Patroni reports {entry.get('state')!r}"
                     for name, entry in view.own.items()
                     if "error" not in entry and entry.get("state") not in HEALTHY_STATES]
        if view.cluster is None:
            problems.append("no member answers GET /cluster")
            return GateResult.failed("; ".join(problems), **view.evidence())
        for member in members:
            if view.entry_for(member) is None:
                problems.append(f"{member.name} ({member.private_ip}) is not in the cluster")
        hosts = {m.private_ip for m in members}
        extra = [row["name"] for row in view.cluster if row.get("host") not in hosts]
        if extra:
            problems.append(f"the cluster has members outside the group: {', '.join(extra)}")
        leader = view.leader_row()
        if leader is None:
            leaders = [row["name"] for row in view.cluster if row.get("role") in LEADER_ROLES]
            problems.append(f"expected one leader, the cluster has "
                            f"{', '.join(leaders) if leaders else 'none'}")
        else:
            for member in members:
                row = view.entry_for(member)
                if row is None or row is leader:
                    continue
                problems += self._replica_problems(member, row, leader, members, view)
        if problems:
            return GateResult.failed("; ".join(problems), **view.evidence())
        assert leader is not None   # no leader is one of the problems above
        return GateResult.passed(
            f"{len(members)} member{'' if len(members) == 1 else 's'} healthy, "
            f"leader {leader['name']}, {len(members) - 1} "
            f"replica{'' if len(members) == 2 else 's'} streaming (lag ≤ {self.max_lag} bytes)",
            **view.evidence())

    def leader(self, members: list[Member]) -> Member | None:
        view = self.view(members)
        leader = view.leader_row()
        if leader is None:
            return None
        return next((m for m in members if view.entry_for(m) is leader), None)

    def member_healthy(self, member: Member, members: list[Member]) -> GateResult:
        group = members if any(m.name == member.name for m in members) else [*members, member]
        view = self.view(group)
        own = view.own[member.name]
        if "error" in own:
            return GateResult.failed(f"{member.name} does not answer: {own['error']}",
                                     **view.evidence())
        if own.get("state") not in HEALTHY_STATES:
            return GateResult.failed(f"{member.name}: Patroni reports {own.get('state')!r}",
                                     **view.evidence())
        row = view.entry_for(member)
        if row is None:
            return GateResult.failed(f"{member.name} ({member.private_ip}) is not in the "
                                     "cluster", **view.evidence())
        leader = view.leader_row()
        if leader is None:
            return GateResult.failed("the cluster has no single leader", **view.evidence())
        if row is leader:
            return GateResult.passed(f"{member.name} leads the cluster", **view.evidence())
        problems = self._replica_problems(member, row, leader, group, view)
        if problems:
            return GateResult.failed("; ".join(problems), **view.evidence())
        return GateResult.passed(f"{member.name} rejoined as a replica streaming from "
                                 f"{leader['name']} (lag {view.lags.get(row['name'])} bytes)",
                                 **view.evidence())

    def move_leader_off(self, member: Member, members: list[Member]) -> None:
        """Switch over from ``member`` to the healthy replica with the least lag, then wait
        until that replica runs as the primary. No-op when ``member`` does not lead."""
        view = self.view(members)
        leader = view.leader_row()
        if leader is None or view.entry_for(member) is not leader:
            return
        candidates = [(m, row) for m in members
                      if m.name != member.name and (row := view.entry_for(m)) is not None
                      and not self._replica_problems(m, row, leader, members, view)]
        if not candidates:
            raise PatroniError(
                f"cannot move the leadership off {member.name}: no other member is a healthy "
                f"streaming replica; cluster: {json.dumps(view.cluster)}")
        target, row = min(candidates,
                          key=lambda pair: self._lag(pair[0], pair[1], leader, members, view))
        url = f"{self.api_url(member)}/switchover"
        body = {"leader": leader["name"], "candidate": row["name"]}
        try:
            # Patroni answers once the switchover happened (it polls the DCS up to ~10 s)
            status, answer = self._request(url, body, timeout=self.switchover_timeout)
        except (OSError, ValueError) as error:
            raise PatroniError(f"switchover {leader['name']} → {row['name']}: POST {url}: "
                               f"{_reason(error)}") from None
        if status != 200 and status != 503:   # 503: "status unknown", may still complete
            raise PatroniError(f"switchover {leader['name']} → {row['name']} refused: "
                               f"HTTP {status} {answer}")
        self._wait_until_leading(target, members, previous=leader["name"])

    # -- helpers -----------------------------------------------------------------------------

    def _leader_own(self, leader: dict[str, Any], members: list[Member],
                    view: ClusterView) -> dict[str, Any] | None:
        """The leader's own ``/patroni`` answer (None when it did not answer)."""
        leader_member = next((m for m in members if view.entry_for(m) is leader), None)
        if leader_member is None:
            return None
        own = view.own.get(leader_member.name, {})
        return None if "error" in own else own

    def _lag(self, member: Member, row: dict[str, Any], leader: dict[str, Any],
             members: list[Member], view: ClusterView) -> int | str:
        """Bytes of WAL the replica has still to replay: the leader's current WAL location
        minus the replica's replayed location, both read just now from ``/patroni``.

        ``/cluster``'s ``lag`` compares positions each member publishes in the DCS once per
        loop (``loop_wait``), at different moments: it is stale by design and can show a whole
        WAL segment (16 MiB) of "lag" right after a segment switch. It is the fallback when a
        fresh reading is missing.
        """
        leader_own = self._leader_own(leader, members, view) or {}
        location = leader_own.get("xlog", {}).get("location")
        xlog = view.own.get(member.name, {}).get("xlog", {})
        replayed = xlog.get("replayed_location", xlog.get("received_location"))
        if isinstance(location, int) and isinstance(replayed, int):
            return max(0, location - replayed)
        lag: int | str = row.get("lag", "unknown")
        return lag

    def _replica_problems(self, member: Member, row: dict[str, Any], leader: dict[str, Any],
                          members: list[Member], view: ClusterView) -> list[str]:
        name = row.get("name", member.name)
        if row.get("role") in LEADER_ROLES:
            return [f"{member.name} is a leader, not a replica"]
        problems = []
        if row.get("state") not in HEALTHY_REPLICA_STATES:
            problems.append(f"replica {name} is {row.get('state')!r}")
        lag = self._lag(member, row, leader, members, view)
        view.lags[name] = lag
        if not isinstance(lag, int):
            problems.append(f"replica {name} has lag {lag!r}")
        elif lag > self.max_lag:
            problems.append(f"replica {name} lags {lag} bytes (> {self.max_lag})")
        leader_own = self._leader_own(leader, members, view)
        if leader_own is None:
            problems.append("the leader's replication status is unknown")
        else:
            streaming = {r.get("application_name"): r.get("state")
                         for r in leader_own.get("replication", [])}
            if streaming.get(name) != "streaming":
                problems.append(f"replica {name} does not stream from the leader "
                                f"(replication state {streaming.get(name)!r})")
        return problems

    def _leads(self, member: Member) -> bool:
        try:
            own = self._get(member, "/patroni")
        except PatroniError:
            return False
        return own.get("role") in ("master", "primary") and own.get("state") == "running"

    def _wait_until_leading(self, target: Member, members: list[Member], previous: str) -> None:

        def leads() -> bool:
            if not self._leads(target):
                return False
            view = self.view(members)
            leader = view.leader_row()
            return leader is not None and view.entry_for(target) is leader

        if not poll(leads, timeout=self.switchover_timeout, interval=0.5).ok:
            view = self.view(members)
            raise PatroniError(
                f"switchover {previous} → {target.name}: {target.name} does not lead "
                f"after {self.switchover_timeout:g}s; cluster: {json.dumps(view.cluster)}")

    # -- data probe (doit test-upgrade) ------------------------------------------------------

    def write_probe(self, members: list[Member]) -> dict[str, Any]:
        """Write a row on the primary; ``verify_probe`` reads it back from every member.

        Retries until a primary accepts it (``probe_timeout``): the probe may be written right
        after the block was applied, while Patroni is still bootstrapping the cluster.
        """
        key, value = uuid.uuid4().hex, uuid.uuid4().hex
        sql = (f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (key text PRIMARY KEY, value text NOT "
               f"NULL); INSERT INTO {PROBE_TABLE} VALUES ('{key}', '{value}') "
               "ON CONFLICT (key) DO NOTHING")
        try:
            retry(lambda: self._psql([m.private_ip for m in members], sql, read_write=True),
                  retry_on=PatroniError, timeout=self.probe_timeout, interval=1.0)
        except PatroniError as error:
            raise PatroniError(f"no primary accepted the probe row within "
                               f"{self.probe_timeout:g}s: {error.message}") from None
        return {"table": PROBE_TABLE, "key": key, "value": value}

    def verify_probe(self, members: list[Member], probe: dict[str, Any]) -> GateResult:
        """Every member returns the probe row (polled up to ``probe_timeout``: a replica may
        still be replaying)."""

        def read_back() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            for member in members:
                try:
                    seen[member.name] = self._psql(
                        [member.private_ip],
                        f"SELECT value FROM {probe['table']} WHERE key = '{probe['key']}'"
                    ) or None
                except PatroniError as error:
                    seen[member.name] = f"error: {error.message}"
            return seen

        polled = poll(read_back, lambda seen: all(v == probe["value"] for v in seen.values()),
                      timeout=self.probe_timeout, interval=1.0)
        return GateResult(polled.ok, f"probe row {probe['key']} " + (
            "read back from every member" if polled.ok else "missing or different"),
            {"expected": probe["value"], "seen": polled.value})

    def _psql(self, hosts: list[str], sql: str, *, read_write: bool = False) -> str:
        psql = next((p for p in PSQL_CANDIDATES if os.access(p, os.X_OK)), shutil.which("psql"))
        if psql is None:
            raise PatroniError("the Patroni data probe needs psql (Debian postgresql-client)")
        password = self.outputs.get("superuser_password")
        if not password:
            raise PatroniError("the Patroni data probe needs the block output "
                               "'superuser_password'")
        dsn = (f"host={','.join(hosts)} port={self.outputs.get('port', 5432)} "
               f"user={self.outputs.get('superuser', 'postgres')} dbname=postgres "
               f"connect_timeout=5" + (" target_session_attrs=read-write" if read_write else ""))
        result = subprocess.run([psql, dsn, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                                capture_output=True, text=True, timeout=60, check=False,
                                env={**os.environ, "PGPASSWORD": str(password)})
        if result.returncode != 0:
            raise PatroniError(f"psql on {', '.join(hosts)}: {result.stderr.strip()}")
        return result.stdout.strip()


def _parse(raw: bytes) -> Any:
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason if reason is not None else error)


def _own_summary(document: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``/patroni`` a gate reads (and prints as evidence)."""
    summary: dict[str, Any] = {
        key: document[key] for key in ("state", "role", "timeline", "server_version",
                                       "pending_restart", "pause", "xlog")
        if key in document}
    summary["replication"] = [
        {key: row.get(key) for key in ("application_name", "client_addr", "state",
                                       "sync_state")}
        for row in document.get("replication", [])]
    return summary


def _row_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("name", "role", "state", "host", "api_url", "lag",
                                      "timeline") if key in row}

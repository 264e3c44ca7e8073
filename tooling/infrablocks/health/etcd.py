"""The built-in ``etcd`` check: etcd v3's JSON gateway on each member's client port.

- cluster healthy: every member answers ``/health`` and ``/v3/maintenance/status``, all agree on
  one leader that is a member, the member list has exactly the group's members (none unstarted),
  and raft indexes are within ``max_raft_lag`` of each other;
- member healthy (rejoined): the member serves, follows the same leader, is in the member list
  and has caught up (raft index within ``max_raft_lag`` of the leader's);
- move leader off: ``/v3/maintenance/transfer-leadership`` sent to the leader, to the most
  caught-up other member, then waits for the new leader.

Options (``check_options``): ``client_port`` (2379), ``max_raft_lag`` (50), ``request_timeout``
(2 s). Also a probe for ``doit test-upgrade``: keys written before, read back after.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from infrablocks.health.base import CheckContext, GateResult, Member
from infrablocks.waiting import poll

PROBE_PREFIX = "/infrablocks/upgrade-probe/"


class EtcdError(Exception):
    pass


class EtcdCheck:
    def __init__(self, context: CheckContext | None = None) -> None:
        options = context.options if context else {}
        self.port = int(options.get("client_port", 2379))
        self.max_lag = int(options.get("max_raft_lag", 50))
        self.timeout = float(options.get("request_timeout", 2.0))

    # -- HTTP ------------------------------------------------------------------------------

    def url(self, member: Member) -> str:
        return f"http://{member.private_ip}:{self.port}"

    def _call(self, member: Member, path: str, body: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url(member) + path, data=data,
                                         method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise EtcdError(f"{path}: HTTP {exc.code} {detail}") from exc
        except (OSError, ValueError) as exc:
            raise EtcdError(f"{path}: {exc}") from exc

    def status(self, member: Member) -> dict[str, Any]:
        return self._call(member, "/v3/maintenance/status", {})

    def _survey(self, members: list[Member]) -> dict[str, dict[str, Any]]:
        """Per member name: health, member_id, leader, raft_index, or error."""
        survey: dict[str, dict[str, Any]] = {}
        for member in members:
            entry: dict[str, Any] = {"endpoint": self.url(member)}
            try:
                health = self._call(member, "/health")
                entry["health"] = str(health.get("health")) == "true"
                status = self.status(member)
                entry["member_id"] = status["header"]["member_id"]
                entry["leader"] = status.get("leader", "0")
                entry["raft_index"] = int(status.get("raftIndex", 0))
                entry["raft_term"] = int(status.get("raftTerm", 0))
            except (EtcdError, KeyError, TypeError) as exc:
                entry["error"] = str(exc)
            survey[member.name] = entry
        return survey

    def _member_list(self, members: list[Member]) -> list[dict[str, Any]] | None:
        for member in members:
            try:
                listed: list[dict[str, Any]] = self._call(
                    member, "/v3/cluster/member/list", {}).get("members", [])
                return listed
            except EtcdError:
                continue
        return None

    # -- ServiceCheck --------------------------------------------------------------------------

    def cluster_health(self, members: list[Member]) -> GateResult:
        survey = self._survey(members)
        problems = [f"{name}: {e['error']}" for name, e in survey.items() if "error" in e]
        problems += [f"{name}: /health says unhealthy" for name, e in survey.items()
                     if "error" not in e and not e["health"]]
        ok_entries = [e for e in survey.values() if "error" not in e]
        leaders = {e["leader"] for e in ok_entries}
        ids = {e["member_id"] for e in ok_entries}
        if len(leaders) != 1 or "0" in leaders:
            problems.append(f"members do not agree on one leader: {sorted(leaders)}")
        elif ok_entries and not leaders <= ids:
            problems.append(f"the leader {next(iter(leaders))} is not among the reachable "
                            "members")
        listed = self._member_list(members)
        evidence: dict[str, Any] = {"members": survey}
        if listed is None:
            problems.append("no member answers the member list")
        else:
            evidence["member_list"] = [{"name": m.get("name", ""),
                                        "peer_urls": m.get("peerURLs", [])} for m in listed]
            unstarted = [m for m in listed if not m.get("name")]
            if unstarted:
                problems.append(f"{len(unstarted)} member"
                                + (" was" if len(unstarted) == 1 else "s were")
                                + " added but not started")
            if len(listed) != len(members):
                problems.append(f"the cluster lists {len(listed)} "
                                f"member{'' if len(listed) == 1 else 's'}, expected "
                                f"{len(members)}")
            for member in members:
                if not any(member.private_ip in url for m in listed
                           for url in m.get("peerURLs", [])):
                    problems.append(f"{member.name} ({member.private_ip}) is not in the "
                                    "member list")
        indexes = [e["raft_index"] for e in ok_entries]
        if indexes and max(indexes) - min(indexes) > self.max_lag:
            problems.append(f"raft indexes differ by {max(indexes) - min(indexes)} "
                            f"(> {self.max_lag}): a member is behind")
        if problems:
            return GateResult(False, "; ".join(problems), evidence)
        return GateResult(True, f"{len(members)} "
                                f"member{'' if len(members) == 1 else 's'} healthy, leader "
                                f"{self._name_of(next(iter(leaders)), survey)}", evidence)

    def leader(self, members: list[Member]) -> Member | None:
        survey = self._survey(members)
        leaders = {e["leader"] for e in survey.values() if "error" not in e}
        if len(leaders) != 1:
            return None
        leader_id = next(iter(leaders))
        for member in members:
            if survey[member.name].get("member_id") == leader_id:
                return member
        return None

    def member_healthy(self, member: Member, members: list[Member]) -> GateResult:
        survey = self._survey(members)
        mine = survey[member.name]
        if "error" in mine:
            return GateResult(False, f"{member.name} does not answer: {mine['error']}",
                              {"members": survey})
        problems = []
        if not mine["health"]:
            problems.append(f"{member.name}: /health says unhealthy")
        if mine["leader"] == "0":
            problems.append(f"{member.name} has no leader")
        leader = next((e for e in survey.values()
                       if "error" not in e and e["member_id"] == mine["leader"]), None)
        if leader is None and mine["leader"] != "0":
            problems.append(f"{member.name} follows {mine['leader']}, which does not answer")
        elif leader is not None and leader["raft_index"] - mine["raft_index"] > self.max_lag:
            problems.append(f"{member.name} is {leader['raft_index'] - mine['raft_index']} "
                            "raft entries behind the leader")
        listed = self._member_list([member])
        if listed is None or not any(member.private_ip in url for m in listed
                                     for url in m.get("peerURLs", []) if m.get("name")):
            problems.append(f"{member.name} is not a started member of the cluster")
        if problems:
            return GateResult(False, "; ".join(problems), {"members": survey})
        return GateResult(True, f"{member.name} rejoined (raft index {mine['raft_index']})",
                          {"members": survey})

    def move_leader_off(self, member: Member, members: list[Member]) -> None:
        survey = self._survey(members)
        mine = survey.get(member.name, {})
        if "error" in mine or mine.get("leader") != mine.get("member_id"):
            return
        others = sorted((e for m, e in survey.items() if m != member.name and "error" not in e
                         and e["health"]), key=lambda e: -e["raft_index"])
        if not others:
            return
        self._call(member, "/v3/maintenance/transfer-leadership",
                   {"targetID": others[0]["member_id"]})

        def moved() -> bool:
            try:
                return self.status(member).get("leader") not in ("0", mine["member_id"])
            except EtcdError:
                return False

        poll(moved, timeout=15, interval=0.2)

    @staticmethod
    def _name_of(member_id: str, survey: dict[str, dict[str, Any]]) -> str:
        return next((name for name, e in survey.items() if e.get("member_id") == member_id),
                    member_id)

    # -- data probe (doit test-upgrade) -------------------------------------------------------

    def write_probe(self, members: list[Member]) -> dict[str, Any]:
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        value = uuid.uuid4().hex
        last: Exception | None = None
        for member in members:
            try:
                self._call(member, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
                return {"key": key, "value": value}
            except EtcdError as exc:
                last = exc
        raise EtcdError(f"no member accepted the probe write: {last}")

    def verify_probe(self, members: list[Member], probe: dict[str, Any]) -> GateResult:
        seen = {}
        for member in members:
            try:
                found = self._call(member, "/v3/kv/range", {"key": _b64(probe["key"])})
                kvs = found.get("kvs") or []
                seen[member.name] = base64.b64decode(kvs[0]["value"]).decode() if kvs else None
            except (EtcdError, KeyError) as exc:
                seen[member.name] = f"error: {exc}"
        ok = all(v == probe["value"] for v in seen.values())
        return GateResult(ok, f"probe key {probe['key']} " + (
            "read back from every member" if ok else "missing or different"),
            {"expected": probe["value"], "seen": seen})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()

"""Building checks from a declaration: built-ins by name, "module:function", commands."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from infrablocks.errors import ConfigError
from infrablocks.health import BUILTIN_CHECKS, build_check, check_spec_problems
from infrablocks.health.base import CheckContext, GateResult, Member
from infrablocks.health.etcd import EtcdCheck
from infrablocks.health.http import HttpCheck

MEMBERS = [Member(i, f"m{i}", f"localcloud_instance.member[{i}]", None, f"i-{i}",
                  f"127.42.239.{11 + i}") for i in range(3)]


def context(**options) -> CheckContext:
    return CheckContext(block="db", environment="t", options=options)


def test_builtins_are_built_by_name_with_their_options() -> None:
    check = build_check("etcd", context(client_port=3379, max_raft_lag=7))
    assert isinstance(check, EtcdCheck) and (check.port, check.max_lag) == (3379, 7)
    http = build_check("http", context(port=8081, path="/ready"))
    assert isinstance(http, HttpCheck) and http.url(MEMBERS[0]) == "http://127.42.239.11:8081/ready"


def test_a_module_function_factory(tmp_path, monkeypatch) -> None:
    (tmp_path / "mychecks.py").write_text(textwrap.dedent("""
        from infrablocks.health.base import GateResult

        class Always:
            def __init__(self, context):
                self.context = context
            def cluster_health(self, members):
                return GateResult(True, f"{len(members)} fine for {self.context.block}")
            def leader(self, members):
                return members[-1]
            def member_healthy(self, member, members):
                return GateResult(True, member.name)
            def move_leader_off(self, member, members):
                return None

        def make(context):
            return Always(context)

        def incomplete(context):
            return object()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    check = build_check("mychecks:make", context())
    assert check.cluster_health(MEMBERS).summary == "3 fine for db"
    assert check.leader(MEMBERS) is MEMBERS[-1]
    with pytest.raises(ConfigError, match="does not implement cluster_health, leader"):
        build_check("mychecks:incomplete", context())
    with pytest.raises(ConfigError, match="has no callable 'nothing'"):
        build_check("mychecks:nothing", context())
    with pytest.raises(ConfigError, match="cannot import 'nosuchmodule'"):
        build_check("nosuchmodule:make", context())
    monkeypatch.setitem(BUILTIN_CHECKS, "always", "mychecks:make")
    assert build_check("always", context()).member_healthy(MEMBERS[1], MEMBERS).summary == "m1"


def test_bad_specs_are_named() -> None:
    assert check_spec_problems("etcd") == []
    assert check_spec_problems("a.b:c") == []
    assert check_spec_problems("a b:c") == ["check 'a b:c' is not 'package.module:function'"]
    assert check_spec_problems({"command": []}) == \
        ["check.command must be a non-empty list of strings"]
    assert check_spec_problems({"command": ["x"], "shell": True}) == \
        ["check table has unknown key 'shell' (valid: command)"]
    with pytest.raises(ConfigError, match="invalid check"):
        build_check("nope", context())


SCRIPT = """\
#!{python}
import json, os, sys
members = json.loads(os.environ["INFRABLOCKS_MEMBERS"])
options = json.loads(os.environ["INFRABLOCKS_CHECK_OPTIONS"])
operation = sys.argv[-1]
if operation == "cluster-health":
    ok = options.get("healthy", True)
    evidence = {{"flag": sys.argv[1]}}
    print(json.dumps({{"summary": f"{{len(members)}} members", "evidence": evidence}}))
    sys.exit(0 if ok else 1)
if operation == "leader":
    print(members[1]["name"])
if operation == "member-healthy":
    member = json.loads(os.environ["INFRABLOCKS_MEMBER"])
    print(f"{{member['name']}} at {{member['private_ip']}}")
    sys.exit(0 if member["index"] != 2 else 3)
if operation == "move-leader-off":
    with open(options["log"], "a") as f:
        f.write(json.loads(os.environ["INFRABLOCKS_MEMBER"])["name"] + "\\n")
"""


def test_a_command_check_gets_members_and_options_and_its_exit_status_decides(tmp_path) -> None:
    block_dir = tmp_path / "block"
    block_dir.mkdir()
    script = block_dir / "health.py"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "moves.log"
    ctx = CheckContext(block="db", environment="t", options={"log": str(log)},
                       block_dir=str(block_dir))
    check = build_check({"command": ["./health.py", "-x"]}, ctx)
    health = check.cluster_health(MEMBERS)
    assert health == GateResult(True, "3 members", {
        "flag": "-x", "command": [str(script), "-x", "cluster-health"], "exit_status": 0})
    assert check.leader(MEMBERS) is MEMBERS[1]
    assert check.member_healthy(MEMBERS[0], MEMBERS).summary == "m0 at 127.42.239.11"
    failed = check.member_healthy(MEMBERS[2], MEMBERS)
    assert not failed.ok and failed.evidence["exit_status"] == 3
    check.move_leader_off(MEMBERS[1], MEMBERS)
    assert log.read_text() == "m1\n"
    unhealthy = build_check({"command": [str(script)]},
                            CheckContext("db", "t", options={"healthy": False}))
    assert not unhealthy.cluster_health(MEMBERS).ok
    missing = build_check({"command": ["./nothing-here"]}, ctx)
    with pytest.raises(ConfigError, match="check command of block 'db' not found"):
        missing.cluster_health(MEMBERS)
    assert json.loads(json.dumps(MEMBERS[0].to_dict()))["instance_id"] == "i-0"

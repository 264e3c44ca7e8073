"""Two checkouts on one machine never share addresses (issue 10, part 1).

Two copies of the example repository run `doit env microservice01` at the same time, each in a
subprocess with its own local cloud: both pass, on different subnets, and both give their subnet
back. (The subnets come from the machine-wide table in the user's state directory; the allocator
itself — stale entries, bound addresses, pins — is covered by tests/unit/test_environments.py.)
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from tests.support.deploy_repo import open_deploy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_checkouts_run_doit_env_at_once_on_different_subnets(tmp_path: Path) -> None:
    first = open_deploy_repo(tmp_path / "one")
    second = open_deploy_repo(tmp_path / "two")
    with first.closing(), second.closing():
        running = [repo.popen("env", "microservice01") for repo in (first, second)]
        outputs = [process.communicate(timeout=1500) for process in running]
        subnets = []
        for process, (stdout, stderr) in zip(running, outputs, strict=True):
            assert process.returncode == 0, f"exit {process.returncode}\n{stdout}\n{stderr}"
            assert "block tests microservice01 1.0.0: passed" in stdout
            [(environment, subnet)] = set(re.findall(
                r"environment (t-[0-9a-f]{6}) \((127\.42\.\d+\.0/24)\)", stdout))
            subnets.append(ipaddress.ip_network(subnet))
        assert subnets[0] != subnets[1]
        for repo in (first, second):
            assert repo.workspace().subnets.allocations() == {}   # given back
            assert repo.instances() == []

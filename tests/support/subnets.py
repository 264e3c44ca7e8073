"""Fixed subnets of the tool's own tests, claimed in the machine-wide subnet table while used.

Tests that hand a subnet straight to Terraform (``deploy_block(..., subnet_cidr=SUBNET)``) keep
their readable constants; ``hold_subnet`` claims the /24 in the same machine-wide table the tool
allocates from, so a second copy of the suite running at the same time (another CI job on the
runner) waits for it instead of starting instances on the same addresses, and no environment of
the tool is handed it meanwhile. The claim is keyed by ``owner`` (a directory of the test) and
held by this process: if the test process dies, the entry is stale (reclaimed) as soon as
nothing is bound in the subnet any more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infrablocks.environments import SubnetAllocator
from infrablocks.errors import ConfigError
from infrablocks.waiting import retry

WAIT_SECONDS = 1800.0
POLL_SECONDS = 2.0


def hold_subnet(subnet: str, owner: Path, label: str = "t-test",
                wait: float = WAIT_SECONDS) -> SubnetAllocator:
    """Claim ``subnet`` for ``owner``/``label``, waiting while someone else holds it; give it
    back with ``.release(label)`` on the returned allocator."""
    owner.mkdir(parents=True, exist_ok=True)
    allocator = SubnetAllocator(owner)
    try:
        retry(lambda: allocator.subnet_for(label, subnet), retry_on=ConfigError, timeout=wait,
              interval=POLL_SECONDS)
    except ConfigError as exc:
        raise AssertionError(f"subnet {subnet} stayed in use for {wait:.0f}s: {exc}") from None
    return allocator


def hold_during_module(*subnets: str) -> Callable[..., Iterator[None]]:
    """A module-scoped autouse fixture holding ``subnets`` while the module's tests run.

    At a test module's top level: ``held_subnets = hold_during_module("127.42.203.0/24")``
    (for modules that start instances on fixed addresses without ``deploy_block``).
    """

    @pytest.fixture(scope="module", autouse=True, name="held_subnets")
    def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
        owner = tmp_path_factory.mktemp("subnets")
        claims = [(hold_subnet(subnet, owner, f"t-held{n}"), f"t-held{n}")
                  for n, subnet in enumerate(subnets)]
        yield
        for allocator, label in claims:
            allocator.release(label)

    return held

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

import time
from pathlib import Path

from infrablocks.environments import SubnetAllocator
from infrablocks.errors import ConfigError

WAIT_SECONDS = 1800.0
POLL_SECONDS = 2.0


def hold_subnet(subnet: str, owner: Path, label: str = "t-test",
                wait: float = WAIT_SECONDS) -> SubnetAllocator:
    """Claim ``subnet`` for ``owner``/``label``, waiting while someone else holds it; give it
    back with ``.release(label)`` on the returned allocator."""
    owner.mkdir(parents=True, exist_ok=True)
    allocator = SubnetAllocator(owner)
    deadline = time.monotonic() + wait
    while True:
        try:
            allocator.subnet_for(label, subnet)
            return allocator
        except ConfigError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"subnet {subnet} stayed in use for {wait:.0f}s: "
                                     f"{exc}") from None
            time.sleep(POLL_SECONDS)

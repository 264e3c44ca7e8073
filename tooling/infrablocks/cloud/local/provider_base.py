"""What every local-cloud provider resource shares: the cloud handle and error reporting.

Kept apart from ``provider.py`` so that resource modules (``provider_jobs.py``) can import it
while ``provider.py`` imports them for its ``RESOURCES`` list.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tf.iface import Resource, UpgradeContext

from infrablocks.errors import InfrablocksError

# An object's attribute values as the tf framework passes them (config, plan, state).
Values = dict[str, Any]

if TYPE_CHECKING:
    from tf.utils import Diagnostics

    from infrablocks.cloud.local.control import LocalCloud


class ProviderNotConfigured(InfrablocksError):
    pass


class CloudResource(Resource):
    """Base of the provider's resources: ``self.cloud`` is the configured LocalCloud."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    @property
    def cloud(self) -> LocalCloud:
        cloud: LocalCloud | None = getattr(self.provider, "cloud", None)
        if cloud is None:
            raise ProviderNotConfigured("the localcloud provider is not configured")
        return cloud

    def upgrade(self, ctx: UpgradeContext, version: int, old: Values) -> Values:
        # The framework's default warns on every refresh; our schemas have one version.
        return old


@contextlib.contextmanager
def reporting(diagnostics: Diagnostics, action: str) -> Iterator[None]:
    """Turn an exception inside the block into a Terraform error diagnostic.

    User-caused errors (InfrablocksError) show their message and hint; anything else shows the
    exception and its traceback as the detail (a bug worth reporting).
    """
    try:
        yield
    except InfrablocksError as exc:
        diagnostics.add_error(f"{action}: {exc.message}", exc.hint or "")
    except Exception as exc:  # noqa: BLE001 - every failure must reach Terraform as a diagnostic
        diagnostics.add_error(f"{action}: {type(exc).__name__}: {exc}", traceback.format_exc())


def map_like(prior: dict[str, str] | None, actual: dict[str, str]) -> dict[str, str] | None:
    """``actual``, but null when the configuration left the map null and it is empty (so that a
    refresh does not turn ``null`` into ``{}`` and show a change)."""
    if prior is None and not actual:
        return None
    return dict(actual)

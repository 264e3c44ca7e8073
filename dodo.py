"""doit entry point of this monorepo: every infrablocks command (`doit list` shows them)."""

from infrablocks.tasks import *  # noqa: F403

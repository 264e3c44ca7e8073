"""infrablocks: versioned infrastructure blocks for immutable-infrastructure monorepos."""

__version__ = "0.1.0"
